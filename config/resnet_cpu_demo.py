# CPU demo: a narrow PreAct ResNet-18 (width 8) on 2,000 images of the real CIFAR-10 subset,
# the paper's recipe in miniature: plain SGD with weight decay, a drop to a tiny LR at 3/4 of
# training, an EMA of the iterates. About half a minute on two quiet CPU cores; 4.5 minutes with
# OMP_NUM_THREADS=1 on a 2-core machine running four other jobs.
#   python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
#   python train_resnet.py config/resnet_cpu_demo.py
n_train = 2000
width = 8
batch_size = 100
lr = 0.1
weight_decay = 0.0125
epochs = 16
first_decay = 0.75
lr_flow = 1e-3
ema_coef = 0.98  # ~20 batches per epoch: 0.999 would still remember the initialisation
eval_every = 4
device = 'cpu'
