# bfloat16 divergence runs (Sec. 3, Fig. 4): GPT-2-small at context 1024, batch 16 x 16,
# cosine lr 6e-4 -> 6e-5 over 50,000 iterations, bfloat16 autocast. Without WD the loss
# diverges (logged as "diverged": true, run stops, last good checkpoint kept); with 0.1 or 0.3,
# or in float32, it does not:
#   python train_gpt.py config/gpt_bf16.py --weight_decay=0
#   python train_gpt.py config/gpt_bf16.py --weight_decay=0.1
#   python train_gpt.py config/gpt_bf16.py --weight_decay=0 --dtype=float32
# On a large GPU --micro_batch_size=64 trains on the same 256 sequences in 4 passes instead of 16.
dataset = 'openwebtext'
dtype = 'bfloat16'
block_size = 1024
batch_size = 16
gradient_accumulation_steps = 16
learning_rate = 6e-4
min_lr = 6e-5
max_iters = 50000
weight_decay = 0.0
