# Quick CPU demo: a small character-level GPT on tiny Shakespeare, a few minutes on 2 cores.
#   python prepare_data.py shakespeare_char --source=../shared/data/tinyshakespeare/input.txt
#   python train_gpt.py config/gpt_cpu_demo.py
#   python sample.py --out_dir=out/gpt_cpu_demo
# Measured: 4.5 minutes, final val loss 1.73, with OMP_NUM_THREADS=1 on a 2-core CPU shared with
# another job. With 2 threads: 88 ms/iteration on a quiet CPU (~2.5 minutes),
# but 10-20 times slower on a busy one.
dataset = 'shakespeare_char'
vocab_multiple = 1
device = 'cpu'

eval_interval = 250
eval_iters = 20
log_interval = 50

batch_size = 32
gradient_accumulation_steps = 1
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128

learning_rate = 2e-3  # a small model tolerates a larger LR than GPT-2-small's 6e-4
max_iters = 1500
warmup_iters = 100
min_lr = 2e-4
weight_decay = 0.1
