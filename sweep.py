r"""
Run a grid of training runs as the training script's own command lines: a few at a time on this
machine, or as Slurm jobs through submitit. Running the same sweep again skips what is done and
resumes the rest.

    python sweep.py train_gpt.py config/mini_llm_cosine.py --weight_decay=0,0.1,0.3 --seed=0,1,2 --jobs=2
    python sweep.py train_gpt.py config/mini_llm_constant.py --weight_decay=0,0.3,0.9 --seed=0,1,2 --dry_run
    python sweep.py train_gpt.py config/mini_llm_finetune.py --weight_decay=0,0.3,0.9 --seed=0,1,2 \
        --init_from=out/mini_llm_constant_wd{weight_decay}_seed{seed}/ckpt.pt  # claim 5: fine-tune each
    python sweep.py train_gpt.py config/gpt_cosine.py --weight_decay=0,0.1,0.3 --cluster=slurm --gpus=1 \
        --time=1440 --partition=gpu

The grid is every combination of the comma-separated values; a value without a comma goes to every
run, and {key} in a value is the run's own value of that key, written as in run names. Each run is
`python SCRIPT ARGS --out_dir=out/NAME`, NAME being the folder the script gives the same command
without --out_dir (configurator.run_name; a fine-tuning GPT run is named after its parent). The
sweep's own options: --jobs (runs at a time; default 1 here, all on Slurm), --dry_run (print the
commands), --cluster=slurm or local, and for those --gpus (per job), --time (minutes), --partition.

Holding a run folder's lock, the sweep looks at what it holds:
  done      ckpt.pt is at the last iteration (GPT: iter == max_iters) or epoch (ResNet: epoch == epochs).
            Both scripts write it after the final eval line, as their last act before exiting 0, so
            this is "the run exited 0", for a run started by hand too. Skipped.
  diverged  the log's last line says "diverged": true (the run exited 1). Not run again: resume is
            exact, it would diverge at the same step. Delete the folder to run it again.
  resume    a ckpt.pt before the end: the same command with --init_from=resume.
  stale     a log.jsonl but no ckpt.pt (killed before its first checkpoint, it cannot resume): the
            log is moved aside to log.jsonl.stale, never deleted, and the run starts again.
  fresh     anything else: started.
Each run's stdout and stderr go to out/NAME/output.txt, after a header line per attempt. The lock is
fcntl.flock on out/NAME/sweep.lock, inherited by the training process: no two processes ever train in
one folder, whether a second sweep starts here or a Slurm job lands on another node, and the kernel
drops it with the process, so a crash never leaves it behind.
Exit status: 0 every run done; 1 a run failed, diverged or was busy; 2 bad input; 130 / 143 stopped
by SIGINT / SIGTERM after the runs checkpointed (run the same command again to resume them).

Here, each run gets cores // jobs CPU threads (OMP_NUM_THREADS, unless set) and, where GPUs are
visible, one GPU (CUDA_VISIBLE_DEVICES), the jobs taking them in turn. Ctrl-C or SIGTERM: every run
gets SIGTERM, checkpoints and exits 143; no new one starts. --cluster=slurm submits a Slurm job per
run (pip install submitit; with --jobs, the sweep submits more as jobs end, so keep it running). The
job takes the lock and decides itself, so submitting a sweep again while its jobs run is harmless.
Slurm's SIGTERM at the time limit, and submitit's signal before it, make the run checkpoint and stop.
Stopping the sweep stops only its waiting: the jobs go on. --cluster=local is the same code through
submitit's local executor, on this machine (how it is tested). One run on several GPUs is torchrun's
(train_gpt.py's docstring), not the sweep's.
"""
import fcntl
import itertools
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import configurator
from configurator import ConfigError, default_out_dir, fail, name_text
from run_io import format_duration

# the scripts a sweep runs: their runs' name without a config file, and when a run is done (the field
# `at` of its checkpoint reaches the config key `goal`)
SCRIPTS = {'train_gpt.py': {'prefix': 'gpt', 'goal': 'max_iters', 'at': 'iter'},
           'train_resnet.py': {'prefix': 'resnet', 'goal': 'epochs', 'at': 'epoch'}}
OPTIONS = {'jobs': None, 'dry_run': False, 'cluster': '', 'gpus': 0, 'time': 240, 'partition': ''}
PLACEHOLDER = re.compile(r'\{(\w+)\}')

# -----------------------------------------------------------------------------
# the grid: every run's command line and folder, checked before anything runs


class _Stop(Exception):
    pass


def config_block(script):
    """The script's defaults and the choices it checks values against, as the script has them: the
    script runs up to its configure() call, which stops it there (nothing after that line runs)."""
    seen = {}

    def stop_here(namespace, doc=None, argv=None, choices=None):
        seen.update(defaults=configurator.config_defaults(namespace), choices=choices)
        raise _Stop

    real, configurator.configure = configurator.configure, stop_here
    if (here := str(Path(script).resolve().parent)) not in sys.path:  # the script's modules (optim, model)
        sys.path.insert(0, here)
    try:
        runpy.run_path(script)
    except _Stop:
        pass
    finally:
        configurator.configure = real
    return seen['defaults'], seen['choices']


def split_values(raw):
    """'0,0.1,0.3' -> ['0', '0.1', '0.3']; a comma inside brackets or quotes belongs to its value."""
    values, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(raw):
        if quote or c in '\'"':
            quote = None if c == quote else quote or c
        elif c in '([{)]}':
            depth += 1 if c in '([{' else -1
        elif c == ',' and depth == 0:
            values, start = values + [raw[start:i]], i + 1
    return values + [raw[start:]]


def expand(script, args):
    """The runs of the grid, the first swept key varying slowest; exit 2 at the first bad value."""
    kind, (defaults, choices) = SCRIPTS[Path(script).name], config_block(script)
    keys = [a[2:].split('=', 1)[0] for a in args if a.startswith('--') and '=' in a]
    if twice := next((k for k in keys if keys.count(k) > 1), None):
        fail(f"--{twice} is given twice; give its values once, separated by commas")
    if '--init_from=resume' in args:
        fail("the sweep decides which runs to resume; drop --init_from=resume")
    if unknown := next((n for a in args for n in PLACEHOLDER.findall(a) if n not in keys), None):
        fail(f"{{{unknown}}} names no key of this command line (its keys: {', '.join(keys)})")
    grid = [[f"--{a[2:].split('=', 1)[0]}={v}" for v in split_values(a.split('=', 1)[1])]
            if a.startswith('--') and '=' in a else [a] for a in args]
    runs = []
    try:
        for argv in map(list, itertools.product(*grid)):
            given = configurator.apply_args(defaults, [a for a in argv if not PLACEHOLDER.search(a)])
            argv = [PLACEHOLDER.sub(lambda m, given=given: name_text(given[m[1]]), a) for a in argv]
            config = configurator.apply_args(defaults, argv)
            configurator.check_bounds(config, choices)
            out_dir = config['out_dir']
            if not out_dir:  # the folder the script itself picks
                out_dir = default_out_dir(kind['prefix'], config, argv)
                argv.append(f'--out_dir={out_dir}')
            runs.append({'name': Path(out_dir).name, 'out_dir': out_dir, 'folder': os.path.abspath(out_dir),
                         'cwd': os.getcwd(), 'command': [sys.executable, script, *argv],
                         'goal': config[kind['goal']], 'at': kind['at']})
    except ConfigError as e:
        fail(e)
    folders = [r['folder'] for r in runs]
    if twice := next((r['out_dir'] for r in runs if folders.count(r['folder']) > 1), None):
        fail(f"two runs would share {twice}: a swept key is left out of run names; add --out_dir=... "
             f"with {{key}} placeholders")
    return runs


# -----------------------------------------------------------------------------
# one run: lock, look at the folder, launch. The same steps here and in a submitit job on its node,
# which runs these functions without the repository's modules (torch only to read a checkpoint).

def last_record(path):
    """The last complete line of a log.jsonl, or None (a torn last line is skipped, as run_io.read_log)."""
    last = None
    if Path(path).exists():
        with open(path) as f:
            for line in f:
                try:
                    last = json.loads(line)
                except json.JSONDecodeError:
                    continue
    return last if isinstance(last, dict) else None


def state_of(run):
    """'done', 'diverged', 'resume', 'stale' or 'fresh': what the run folder holds (see the docstring)."""
    folder = Path(run['folder'])
    if (last_record(folder / 'log.jsonl') or {}).get('diverged'):
        return 'diverged'
    if not (folder / 'ckpt.pt').exists():
        return 'stale' if (folder / 'log.jsonl').exists() else 'fresh'
    import torch
    try:  # mmap: only the small pickle is read, the tensors stay on disk
        at = torch.load(folder / 'ckpt.pt', map_location='cpu', mmap=True, weights_only=False)[run['at']]
    except Exception:  # unreadable: the resumed run says why, in one line
        at = -1
    return 'done' if at >= run['goal'] else 'resume'


def claim(run):
    """Lock the run folder and decide: (state, lock file, note). A run to skip is unlocked at once (lock
    None); one whose lock another process holds is 'busy'."""
    folder = Path(run['folder'])
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / 'sweep.lock', 'a+')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().split(',')[0].strip() or 'another process'
        lock.close()
        return 'busy', None, f"{run['out_dir']} is in use by {holder} ({run['out_dir']}/sweep.lock)"
    state, note = state_of(run), ''
    if state == 'stale':
        aside = next(p for i in itertools.count() if not (p := folder / f"log.jsonl.stale{i or ''}").exists())
        os.rename(folder / 'log.jsonl', aside)
        state, note = 'fresh', f"stopped before its first checkpoint: its log moved to {aside.name}"
    if state in ('done', 'diverged'):
        lock.close()
        lock = None
    return state, lock, note


def launch(run, state, lock, env, own_session):
    """Start the training process, its output appended to out/NAME/output.txt. It inherits the lock file:
    the folder stays locked as long as it runs, whatever happens to its parent."""
    command = run['command'] + (['--init_from=resume'] if state == 'resume' else [])
    with open(Path(run['folder']) / 'output.txt', 'a') as output:
        when = time.strftime('%Y-%m-%d %H:%M:%S')
        output.write(f"=== {when} on {socket.gethostname()}: {shlex.join(command)}\n")
        output.flush()
        process = subprocess.Popen(command, cwd=run['cwd'], env=env, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, pass_fds=(lock.fileno(),),
                                   start_new_session=own_session)
    lock.truncate(0)
    lock.write(f"pid {process.pid} on {socket.gethostname()}, {shlex.join(command)}\n")
    lock.flush()
    return process


def outcome(run, code):
    """What a training process's exit status means (run_io: 0 done, 1 diverged or a fault, 2 bad input)."""
    if code in (130, 143, -signal.SIGINT, -signal.SIGTERM):  # negative: killed before its handler was set
        return 'stopped'
    diverged = code == 1 and (last_record(Path(run['folder']) / 'log.jsonl') or {}).get('diverged')
    return 'done' if code == 0 else 'diverged' if diverged else 'failed'


def job(run):
    """One run as a submitit job, on whichever node it lands: lock, decide, train, report."""
    state, lock, note = claim(run)
    if lock is None:
        return {'state': state, 'code': None, 'note': note}
    # the run stays in the job's process group: Slurm's signals and a terminal's Ctrl-C reach it directly
    process = launch(run, state, lock, dict(os.environ, PYTHONUNBUFFERED='1'), own_session=False)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # the run got the same Ctrl-C: wait for its checkpoint
        code = process.wait()
    except Exception:  # submitit's signal before the time limit raises here: the run checkpoints first
        process.send_signal(signal.SIGTERM)
        code = process.wait()
    note = note or ('resumed' if state == 'resume' else '')
    return {'state': outcome(run, code), 'code': code, 'note': note}


# -----------------------------------------------------------------------------
# the command line

argv = sys.argv[1:]
if {'-h', '--help'} & set(argv):
    print(__doc__.strip())
    sys.exit(0)
if not argv:
    fail("usage: python sweep.py SCRIPT [CONFIG_FILE ...] [--key=VALUE,VALUE ...] [--jobs=N] [--dry_run] "
         "[--cluster=slurm|local]; --help says more")
script, args = argv[0], ['--dry_run=True' if a == '--dry_run' else a for a in argv[1:]]
if Path(script).name not in SCRIPTS:
    fail(f"sweep.py runs {' or '.join(SCRIPTS)}, not {script!r}")
if not Path(script).is_file():
    fail(f"{script}: no such file")
own = [a for a in args if a.startswith('--') and a[2:].split('=', 1)[0] in OPTIONS]
try:
    options = configurator.apply_args(OPTIONS, own)
except ConfigError as e:
    fail(e)
jobs, cluster = options['jobs'], options['cluster']
if jobs is not None and (type(jobs) is not int or jobs < 1):
    fail(f"--jobs must be a whole number, at least 1 (got {jobs!r})")
if cluster not in ('', 'local', 'slurm'):
    fail(f"unknown --cluster {cluster!r}: expected slurm or local (without it: this machine)")
if not cluster and any(a[2:].split('=')[0] in ('gpus', 'time', 'partition') for a in own):
    fail("--gpus, --time and --partition are for --cluster=slurm or local (here each job gets a visible GPU)")
if options['gpus'] < 0 or options['time'] < 1:
    fail("--gpus must be >= 0 and --time (minutes) at least 1")
runs = expand(script, [a for a in args if a not in own])

if options['dry_run']:  # what the sweep would run now, one command a line; what it would skip, as comments
    for run in runs:
        if (state := state_of(run)) in ('done', 'diverged'):
            print(f"# {state}: {run['out_dir']}")
            continue
        if state == 'stale':
            print(f"# {run['out_dir']} stopped before its first checkpoint: move its log.jsonl aside first")
        print(shlex.join(run['command'] + (['--init_from=resume'] if state == 'resume' else [])))
    sys.exit(0)

# -----------------------------------------------------------------------------
# the sweep: start runs while a slot is free, report each change of state, until none is left

slots = min(jobs or (len(runs) if cluster == 'slurm' else 1), len(runs))
cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
threads = os.environ.get('OMP_NUM_THREADS', str(max(1, cores // slots)))  # a setting of your own wins
if cluster:
    try:
        import submitit
    except ImportError:
        fail(f"--cluster={cluster} needs submitit, which is not installed: pip install submitit")
    if cluster == 'slurm' and not shutil.which('sbatch'):
        fail("--cluster=slurm needs Slurm's sbatch, and it is not on this PATH (run it on a login node)")
    if cluster == 'local':  # one machine: its cores shared between the jobs, as here
        os.environ['OMP_NUM_THREADS'] = threads
    executor = submitit.AutoExecutor(folder='out/.submitit', cluster=cluster)  # submitit's logs, pickles
    executor.update_parameters(name='sweep', timeout_min=options['time'], gpus_per_node=options['gpus'],
                               slurm_partition=options['partition'] or None)
    where = f"as {cluster} jobs; submitit's logs in out/.submitit/"
else:
    import torch
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    gpus = ([g for g in visible.split(',') if g.strip()] if visible is not None else
            [str(i) for i in range(torch.cuda.device_count())])
    where = f"here, {threads} CPU thread(s) each" + (f", GPUs {','.join(gpus)} in turn" if gpus else '')
print(f"sweep: {len(runs)} runs of {script}, {slots} at a time {where}; output in out/NAME/output.txt",
      flush=True)

signals = []  # the signals the sweep got; here, each is passed on to the runs as a SIGTERM
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda signum, frame: signals.append(signum))
results, durations, active, todo, forwarded = {}, [], {}, list(runs), 0  # active: slot -> (run, handle, t0)


def report(run, what, text=''):
    """One line per change of state: [3/9 done, 2 running, 1 failed, eta 4m10s] done NAME (2m03s)."""
    counts = Counter(results.values())
    parts = [f"{counts['done']}/{len(runs)} done", f"{len(active)} running"]
    parts += [f"{n} {k}" for k, n in counts.items() if k != 'done']
    eta = '?'
    if durations:  # the mean finished run, for the runs waiting and the rest of those running
        mean, waiting = sum(durations) / len(durations), len(runs) - len(results) - len(active)
        running_left = [max(mean - (time.time() - t0), 0) for _, _, t0 in active.values()]
        # fewer runs left than slots leave slots idle, and no run ends before its own remainder
        in_parallel = max(1, min(slots, waiting + len(active)))
        eta = format_duration(max((mean * waiting + sum(running_left)) / in_parallel, *running_left, 0))
    print(f"[{', '.join(parts)}, eta {eta}] {what} {run['name']} {text}".rstrip(), flush=True)


def start(run, slot):
    """Start a run in slot: (its handle, what started, a note), or None if there is nothing to run."""
    if cluster:  # a finished run needs no job; the job looks again, under the lock
        state, note = state_of(run), ''
        if state not in ('done', 'diverged'):
            submitted = executor.submit(job, run)
            return submitted, 'submitted', f"(job {submitted.job_id})"
    else:
        state, lock, note = claim(run)
        if lock is not None:
            env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONUNBUFFERED='1')
            if gpus:
                env['CUDA_VISIBLE_DEVICES'] = gpus[slot % len(gpus)]
            # a session of its own: a terminal's Ctrl-C reaches only the sweep, which passes it on once
            handle = launch(run, state, lock, env, own_session=True), lock, state
            return handle, 'resume' if state == 'resume' else 'start', f"({note})" if note else ''
    results[run['name']] = state
    report(run, 'busy' if state == 'busy' else 'skip', f"({note or state})")


def finished(run, handle):
    """(state, exit status, note) once the run or job has ended; None while it goes on."""
    if cluster:
        if not handle.done():
            return None
        try:
            result = handle.result()
        except Exception as e:  # the job itself failed, not the run: submitit's log says why
            return 'failed', None, f"job {handle.job_id}: {str(e).strip()[-200:]}; see {handle.paths.stderr}"
        return result['state'], result['code'], result['note']
    process, lock, state = handle
    if process.poll() is None:
        return None
    lock.close()
    return outcome(run, process.returncode), process.returncode, 'resumed' if state == 'resume' else ''


while (todo and not signals) or active:
    while todo and len(active) < slots and not signals:
        slot, run = min(set(range(slots)) - set(active)), todo.pop(0)
        if started := start(run, slot):
            handle, what, note = started
            active[slot] = (run, handle, time.time())
            report(run, what, note)
    if signals and cluster:  # the jobs are the cluster's: stop waiting, leave them running
        ids = ' '.join(handle.job_id for _, handle, _ in active.values())
        hint = f" (scancel {ids} stops them)" if cluster == 'slurm' else ''
        print(f"{signal.Signals(signals[0]).name}: stopped waiting; {len(active)} job(s) go on{hint}, "
              f"{len(todo)} not submitted; run the same command again to see where they stand",
              file=sys.stderr)
        sys.exit(128 + signals[0])
    for signum in signals[forwarded:]:  # SIGTERM whatever came: a run still importing torch ends quietly
        for _, (process, _, _), _ in active.values():
            process.send_signal(signal.SIGTERM)
        print(f"{signal.Signals(signum).name}: {len(active)} running run(s) checkpoint and stop (send it "
              f"again to stop them at once); no new run starts", flush=True)
        forwarded += 1
    for slot, (run, handle, t0) in list(active.items()):
        if (end := finished(run, handle)) is not None:
            (state, code, note), seconds = end, time.time() - t0
            del active[slot]
            results[run['name']] = state
            durations += [seconds] if state == 'done' else []
            details = [note, f"exit {code}" if code else '', format_duration(seconds)]
            report(run, state, f"({', '.join(d for d in details if d)})")
    time.sleep(2 if cluster == 'slurm' else 0.1)

# -----------------------------------------------------------------------------
# the end: every failure with the last lines of its output, and the exit status

for run in runs:
    if results.get(run['name']) in ('failed', 'diverged'):
        output = Path(run['out_dir']) / 'output.txt'
        lines = output.read_text(errors='replace').splitlines()[-10:] if output.exists() else ['(no output)']
        print(f"\n{results[run['name']]}: {run['name']}; the last lines of {output}:\n"
              + '\n'.join('    ' + line for line in lines))
summary = ', '.join(f"{n} {k}" for k, n in Counter(results.values()).items())
if signals:
    print(f"stopped by {signal.Signals(signals[0]).name}: {summary}, {len(runs) - len(results)} not started; "
          f"run the same command again to resume", file=sys.stderr)
    sys.exit(128 + signals[0])
print(f"sweep: {summary}", flush=True)
sys.exit(0 if all(results[r['name']] == 'done' for r in runs) else 1)
