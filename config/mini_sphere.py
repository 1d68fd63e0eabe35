# Claim 3 in miniature (Figure 2 on a laptop): the scale-invariant narrow ResNet-18 (BatchNorm
# without affine parameters, frozen last layer) trained by projected SGD on the sphere of radius 1,
# no weight decay: the LR alone sets the effective LR lr/||w||^2 = lr. Larger LRs stabilise the
# training loss at a higher level; after the run a copy is fine-tuned at lr_flow for 10 epochs,
# and its test error and Hessian trace are logged (flow_*). 1,000 real CIFAR-10 images.
#   python sweep.py train_resnet.py config/mini_sphere.py --lr=0.002,0.007,0.02 --seed=0,1,2 \
#       --jobs=2
#   python plot.py out/mini_sphere_* --figure=sphere --out=mini_sphere.png
n_train = 1000
width = 8
batch_size = 50  # 20 iterations per epoch
scale_inv = True
radius = 1.0
weight_decay = 0.0
lr = 0.007
epochs = 40
first_decay = 1.0  # no drop: the fine-tuned copy plays that part
lr_flow = 1e-3
flow_every = 40  # once, at the end
flow_epochs = 10
hessian_every = 40
hessian_n = 200
hessian_probes = 8
ema_coef = 0.0
eval_every = 5
device = 'cpu'
