# Claim 5 in miniature, second half: fine-tune each constant-LR run of config/mini_llm_constant.py
# for 400 iterations at a 33 times smaller LR (the paper: 60 times smaller, 6e-4 -> 1e-5, for
# 10,000 iterations after 50,000), constant, no warmup, weight decay unchanged.
#   for wd in 0 0.1 0.3; do python train_gpt.py config/mini_llm_finetune.py --weight_decay=$wd \
#       --init_from=out/mini_const_wd$wd/ckpt.pt --out_dir=out/mini_const_wd${wd}_ft; done
#   python plot.py out/mini_const_wd* --figure=llm_finetune --out=assets/mini_llm_finetune.png
exec(open('config/mini_llm_cosine.py').read())
decay_lr = False
learning_rate = 3e-4
warmup_iters = 0
max_iters = 400
eval_interval = 50
