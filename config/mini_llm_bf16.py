# Claim 6 in miniature (Fig. 4 on a laptop): the mini GPT of config/mini_llm_cosine.py at a high
# constant LR, context 128, in bfloat16 autocast (CPUs with AVX-512 BF16 run it as fast as float32).
# In the paper GPT-2-small without weight decay diverges in bfloat16 and not in float32 or with
# weight decay. Three settings, three seeds each:
#   python sweep.py train_gpt.py config/mini_llm_bf16.py --weight_decay=0,0.1 --seed=0,1,2 --jobs=2
#   python sweep.py train_gpt.py config/mini_llm_bf16.py --weight_decay=0 --dtype=float32 \
#       --seed=0,1,2 --jobs=2
#   python plot.py out/mini_llm_bf16_* --figure=bf16 --out=mini_bf16.png
exec(open('config/mini_llm_cosine.py').read())  # the same model and data
dtype = 'bfloat16'
block_size = 128
decay_lr = False
learning_rate = 3e-2  # three times the other miniatures' peak: as high as trains well in float32
max_iters = 1500
eval_interval = 250
log_interval = 50
