# Claim 5 in miniature, first half: the miniature of config/mini_llm_cosine.py at a constant LR
# (Fig. 3 right on a laptop). With weight decay the training loss stays higher all along; the
# tiny-LR fine-tuning (config/mini_llm_finetune.py) shows which run is really better.
#   for wd in 0 0.1 0.3; do python train_gpt.py config/mini_llm_constant.py --weight_decay=$wd \
#       --out_dir=out/mini_const_wd$wd; done
exec(open('config/mini_llm_cosine.py').read())  # the same model, data and batch
decay_lr = False
max_iters = 1000
