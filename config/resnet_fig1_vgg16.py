# Figure 1, VGG-16 on CIFAR-10. The authors' README command omits --batch_norm (no BatchNorm),
# but their argparse default for batch_norm is True, so their code may have run it with
# BatchNorm: add --batch_norm=True to compare.
# Plain SGD, batch 128, 1000 epochs, LR drop to exactly 1e-4 at half of training. The grid:
#   python train_resnet.py config/resnet_fig1_vgg16.py                                       # large LR + WD
#   python train_resnet.py config/resnet_fig1_vgg16.py --weight_decay=0                      # large LR, no WD
#   python train_resnet.py config/resnet_fig1_vgg16.py --lr=0.01                             # small LR + WD
#   python train_resnet.py config/resnet_fig1_vgg16.py --lr=0.01 --weight_decay=0            # small LR, no WD
dataset = 'cifar10'
arch = 'vgg16'
batch_norm = False
batch_size = 128
momentum = 0.0
lr = 0.1
weight_decay = 0.008
epochs = 1000
first_decay = 0.5
lr_flow = 1e-4
