# Constant-LR runs (Sec. 3, Fig. 3 right): the main run with lr 6e-4 held after the 400 warmup
# steps. With WD the training loss is higher all along, and lower after a short tiny-LR
# fine-tuning (config/gpt_finetune.py). The authors swept 0, 0.1, 0.3 and 0.6:
#   python train_gpt.py config/gpt_constant_lr.py --weight_decay=0 --out_dir=out/const_wd0
#   python train_gpt.py config/gpt_constant_lr.py --weight_decay=0.1 --out_dir=out/const_wd0.1
dataset = 'openwebtext'
decay_lr = False
learning_rate = 6e-4
max_iters = 50000
