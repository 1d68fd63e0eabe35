# Weight norm and EMA runs (Section 2.2): the scale-invariant ResNet-18 (BatchNorm without
# affine parameters, frozen last layer) trained with weight decay, so that ||w|| settles where
# weight decay balances the gradient's growth and the effective LR lr/||w||^2 stays high; the
# EMA of the iterates (BatchNorm statistics re-estimated) shows the implicit regularisation
# without a LR drop. The authors' README gives no command for these runs: the LR and weight
# decay here are Figure 1's; log the weight norm, eff_lr and the *_ema errors. Compare:
#   python train_resnet.py config/resnet_scaleinv_wd_ema.py
#   python train_resnet.py config/resnet_scaleinv_wd_ema.py --weight_decay=0
arch = 'resnet18'
scale_inv = True
momentum = 0.0
batch_size = 128
lr = 0.08
weight_decay = 0.0125
epochs = 1000
first_decay = 0.5
lr_flow = 1e-4
ema_coef = 0.999
eval_every = 5
