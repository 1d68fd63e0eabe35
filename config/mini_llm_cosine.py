# Claim 4 in miniature: a cosine schedule, with and without weight decay (Fig. 3 left, on a laptop).
# A 0.35M-parameter character-level GPT on tiny Shakespeare, 1,200 iterations of 16 sequences.
# The paper's runs fit lr*wd*T = 6e-4 * 0.1 * 50,000 = 3 (wd 0.1) to 9 (wd 0.3) weight-decay
# timescales 1/(lr*wd) into training; a peak LR of 1e-2 (small model, small batch: a noisy,
# variance-limited run as the paper's) fits 1.2 to 3.6 here with the paper's own wd values.
#   python prepare_data.py shakespeare_char --source=../shared/data/tinyshakespeare/input.txt
#   python sweep.py train_gpt.py config/mini_llm_cosine.py --weight_decay=0,0.1,0.3 --seed=0,1,2 \
#       --jobs=2
#   python plot.py out/mini_llm_cosine_wd0_seed* out/mini_llm_cosine_wd0.1_seed* \
#       out/mini_llm_cosine_wd0.3_seed* --figure=llm_cosine --out=mini_llm_cosine.png
dataset = 'shakespeare_char'
vocab_multiple = 1
device = 'cpu'
batch_size = 16
gradient_accumulation_steps = 1
block_size = 64
n_layer = 3
n_head = 3
n_embd = 96
learning_rate = 1e-2
min_lr = 1e-3  # lr/10, as the paper
warmup_iters = 50
max_iters = 1200
eval_interval = 100
eval_iters = 20  # 20 x 16 sequences of 64 characters per split, the same batches at every eval
log_interval = 25
