# Quick CPU demo: a small character-level GPT on tiny Shakespeare, a few minutes on one CPU core.
#   python prepare_data.py shakespeare_char --source=../shared/data/tinyshakespeare/input.txt
#   python train_gpt.py config/gpt_cpu_demo.py
#   python sample.py --out_dir=out/gpt_cpu_demo
# It shows claim 4 (Fig. 3 left) on a laptop: with a cosine schedule, weight decay 0.1 has the
# higher training loss for most of the run and the lower one at the end, once the LR has decayed:
#   python train_gpt.py config/gpt_cpu_demo.py --weight_decay=0    # out/gpt_cpu_demo_wd0
#   python plot.py out/gpt_cpu_demo out/gpt_cpu_demo_wd0 --figure=llm_cosine --out=wd.png
# The model and batch of config/mini_llm_cosine.py (0.35M parameters, 16 x 64 characters) for
# 4,000 iterations at a peak LR of 1e-2: lr*wd*T = 1e-2 * 0.1 * 4,000 = 4 weight-decay timescales
# 1/(lr*wd) fit into training (the paper: 3 to 9). The previous demo (4 layers of width 128, batch
# 32, lr 2e-3, 1,500 iterations) fitted 0.3, and the run without weight decay ended lower.
# Measured, seeds 0, 1, 2 (--seed=N), final eval line, wd 0.1 against 0 (mean of the paired
# differences; every seed the same sign): train loss 1.471 vs 1.485 (-0.015; per seed -0.009 to
# -0.021), val loss 1.669 vs 1.694 (-0.024; -0.018 to -0.035), EMA val 1.647 vs 1.682 (-0.035;
# -0.031 to -0.043); the seeds' spread of the val loss is 0.003-0.006. wd 0.1 has the higher train
# loss from iteration ~500 to 3,000-3,500 (by up to 0.045) and ends below. Time: with
# OMP_NUM_THREADS=1 on a 2-core CPU shared with other jobs, 40-45 ms/iteration, 3.3-3.7 minutes
# (load average ~2), and 70-100 ms/iteration, 5.5-8.5 minutes, when it was busier (load 4-6);
# the previous demo's model took 145-165 ms/iteration, 4.5-5 minutes, on the same machine.
dataset = 'shakespeare_char'
vocab_multiple = 1
device = 'cpu'

eval_interval = 250
eval_iters = 40  # 40 x 16 sequences of 64 characters per split, the same batches at every eval
log_interval = 100

batch_size = 16
gradient_accumulation_steps = 1
block_size = 64
n_layer = 3
n_head = 3
n_embd = 96

learning_rate = 1e-2  # a small model and batch: a noisy, variance-limited run, as the paper's
max_iters = 4000
warmup_iters = 100
min_lr = 1e-3  # lr/10, as the paper
weight_decay = 0.1
