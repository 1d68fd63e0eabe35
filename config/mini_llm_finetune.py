# Claim 5 in miniature, second half: fine-tune each constant-LR run of config/mini_llm_constant.py
# for 20% of its length, 200 iterations, at a 60 times smaller LR, constant, no warmup, weight
# decay unchanged (the paper: 10,000 iterations after 50,000, 6e-4 -> 1e-5). Each run starts from
# its parent's final checkpoint, named through the parent's own wd and seed:
#   python sweep.py train_gpt.py config/mini_llm_finetune.py --weight_decay=0,0.3,0.9 --seed=0,1,2 \
#       --init_from=out/mini_llm_constant_wd{weight_decay}_seed{seed}/ckpt.pt --jobs=2
exec(open('config/mini_llm_constant.py').read())  # the constant-LR run's model, data and eval
learning_rate = 1e-2 / 60
warmup_iters = 0
max_iters = 200
eval_interval = 50
