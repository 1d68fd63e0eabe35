# Claims 1 and 2 in miniature (Figure 1 on a laptop): a narrow PreAct ResNet-18 on 1,000 real
# CIFAR-10 images, plain SGD, large or small LR, with or without weight decay; at 3/4 of training
# the LR drops to lr_flow (weight decay kept). Weight decay is raised from the paper's 0.0125
# to 0.05 so that its timescale 1/(lr*wd) = 200 iterations (10 epochs) fits several times into
# the large-LR phase, as 1/(0.08*0.0125) = 1,000 iterations does into the paper's 500 epochs.
#   python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
#   python sweep.py train_resnet.py config/mini_vision_grid.py --lr=0.1,0.005 \
#       --weight_decay=0.05,0 --seed=0,1,2 --jobs=2
#   python plot.py out/mini_vision_grid_* --figure=vision_grid --out=mini_vision_grid.png
n_train = 1000
width = 8
batch_size = 50  # 20 iterations per epoch
lr = 0.1
weight_decay = 0.05
epochs = 60
first_decay = 0.75
lr_flow = 1e-3
ema_coef = 0.99  # averages over ~100 iterations (5 epochs)
eval_every = 5
device = 'cpu'
