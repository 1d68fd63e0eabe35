# Claim 5 in miniature, first half (Fig. 3 right on a laptop), built on the paper's dimensionless
# numbers. The paper's constant-LR runs train GPT-2-small at lr 6e-4 for T = 50,000 iterations with
# wd 0.1 and 0.3: lr*wd*T = 3 and 9 timescales 1/(lr*wd) of weight decay fit into training. Then a
# fine-tuning of 10,000 iterations (20% of T) at a 60 times smaller LR (1e-5) shows which run is
# really better. Here the claim-4 model at a constant lr 1e-2 for T = 1,000 iterations: wd 0.3 and
# 0.9 fit the same 3 and 9 timescales (1e-2 * 0.3 * 1,000 = 3), and config/mini_llm_finetune.py
# runs 200 iterations (20%) at 1e-2 / 60. The val loss is over the whole validation split (111,540
# characters in 1,742 blocks of 64, the same at every eval), so that a paired difference between
# two weight decays is measured on every token; one seed's batches are the same for every wd.
#   python sweep.py train_gpt.py config/mini_llm_constant.py --weight_decay=0,0.3,0.9 --seed=0,1,2 \
#       --jobs=2
exec(open('config/mini_llm_cosine.py').read())  # the same model, data and batch
decay_lr = False
max_iters = 1000
eval_interval = 250
eval_whole_val = True
