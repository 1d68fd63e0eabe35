# Figure 1, PreAct ResNet-34 on CIFAR-100. Plain SGD, batch 128, 1000 epochs, LR drop to
# exactly 1e-4 at half of training. Needs `python prepare_data.py cifar100`. The grid:
#   python train_resnet.py config/resnet_fig1_resnet34preact_cifar100.py                         # large LR + WD
#   python train_resnet.py config/resnet_fig1_resnet34preact_cifar100.py --weight_decay=0        # large LR, no WD
#   python train_resnet.py config/resnet_fig1_resnet34preact_cifar100.py --lr=0.001              # small LR + WD
#   python train_resnet.py config/resnet_fig1_resnet34preact_cifar100.py --lr=0.001 --weight_decay=0
dataset = 'cifar100'
arch = 'resnet34preact'
batch_norm = True
batch_size = 128
momentum = 0.0
lr = 0.15
weight_decay = 0.01
epochs = 1000
first_decay = 0.5
lr_flow = 1e-4
