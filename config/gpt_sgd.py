# Appendix: SGD with momentum 0.9 (dampening 0) for the language model, lr 0.3 with the cosine
# schedule to lr/10, batch 16 x 16, and coupled weight decay (torch.optim.SGD's weight_decay,
# as the authors' runs). They swept 0, 1e-5, 3e-5 and 1e-4:
#   python train_gpt.py config/gpt_sgd.py --weight_decay=1e-5
dataset = 'openwebtext'
optimizer = 'sgd'
momentum = 0.9
learning_rate = 0.3
min_lr = 0.03
wd_mode = 'l2'
weight_decay = 1e-4
batch_size = 16
gradient_accumulation_steps = 16
