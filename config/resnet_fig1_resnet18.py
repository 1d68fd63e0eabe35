# Figure 1, ResNet-18 on CIFAR-10: the defaults of train_resnet.py, written out. Plain SGD
# (momentum 0), batch 128, 1000 epochs, at half of training the LR drops to exactly 1e-4 with
# weight decay kept, no augmentation. The figure's grid (the authors' README):
#   python train_resnet.py config/resnet_fig1_resnet18.py                                    # large LR + WD
#   python train_resnet.py config/resnet_fig1_resnet18.py --weight_decay=0                   # large LR, no WD
#   python train_resnet.py config/resnet_fig1_resnet18.py --lr=0.001                         # small LR + WD
#   python train_resnet.py config/resnet_fig1_resnet18.py --lr=0.001 --weight_decay=0        # small LR, no WD
dataset = 'cifar10'
arch = 'resnet18'
batch_norm = True
batch_size = 128
momentum = 0.0
lr = 0.08
weight_decay = 0.0125
epochs = 1000
first_decay = 0.5
lr_flow = 1e-4
