# Claim 6 through its mechanism: attention-logit growth (Dehghani et al. 2023; Wortsman et al. 2023,
# "Small-scale proxies for large-scale Transformer training instabilities", who reproduce the
# divergences of large models in small ones by raising the LR). Without weight decay
# ||W_q|| ||W_k||, and with them the attention logits q.k/sqrt(d), can grow until the softmax
# saturates; in bfloat16 their absolute error grows with them. A wider model with a longer context
# than the other miniatures (4 heads of 32, context 256), at a constant LR swept as the proxies do;
# every eval logs the largest attention and output logits and what bfloat16 does to the attention
# weights (docs/log_format.md: attn_logit_max, attn_weight_bf16_tv). At lr 3e-2, 600 iterations
# fit lr*wd*T = 1.8 timescales of weight decay 0.1 and 5.4 of 0.3.
#   python sweep.py train_gpt.py config/mini_llm_logits.py --learning_rate=3e-3,1e-2,3e-2 \
#       --weight_decay=0,0.1,0.3 --seed=0,1,2 --jobs=2         # in bfloat16, the default here
#   python sweep.py train_gpt.py config/mini_llm_logits.py --learning_rate=3e-2 --dtype=float32 \
#       --weight_decay=0,0.1 --seed=0,1,2 --jobs=2             # the top LR in float32
exec(open('config/mini_llm_cosine.py').read())  # the data and the eval
dtype = 'bfloat16'
n_layer = 2
n_head = 4
n_embd = 128
block_size = 256
batch_size = 8
decay_lr = False
warmup_iters = 50
learning_rate = 3e-2
max_iters = 600
eval_interval = 100
log_interval = 50
eval_iters = 10  # 10 x 8 sequences of 256 characters per split
