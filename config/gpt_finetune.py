# Tiny-LR fine-tuning of a constant-LR run (Sec. 3, Fig. 3 right): start from another run's
# checkpoint (weights, EMA and Adam's moments) and train 10,000 more iterations at lr 1e-5,
# constant, no warmup; the authors evaluated on 5,000 sequences (625 batches of 8).
# Weight decay is this command's, not the parent's (the default is 0): pass the parent's value.
#   python train_gpt.py config/gpt_finetune.py --weight_decay=0.1 --init_from=out/const_wd0.1/ckpt.pt \
#       --out_dir=out/const_wd0.1_ft
# Without --out_dir the run goes to out/<parent run>_ft_<overrides>; it counts its iterations from 0.
dataset = 'openwebtext'
learning_rate = 1e-5
decay_lr = False
warmup_iters = 0
max_iters = 10000
eval_iters = 625
