# Figure 2: the scale-invariant ResNet-18 (BatchNorm without affine parameters, frozen last
# layer) trained by projected SGD on the sphere of radius 1, no weight decay, at LR 0.003 (the
# figure compares 0.001, 0.003 and 0.005: pass --lr). The LR stays constant (the authors' traceh.py has no
# schedule); every 2 epochs a copy is fine-tuned for 100 epochs at 1e-4 and its test error and
# Hessian trace are logged (flow_*). Expensive: 50 fine-tunings of 100 epochs each.
#   python sweep.py train_resnet.py config/resnet_sphere.py --lr=0.001,0.003,0.005
arch = 'resnet18'
scale_inv = True
radius = 1.0
weight_decay = 0.0
momentum = 0.0
batch_size = 128
lr = 0.003
epochs = 100
first_decay = 1.0  # no drop
lr_flow = 1e-4
flow_every = 2
flow_epochs = 100
eval_every = 2
hessian_every = 2
hessian_n = 5000  # the authors' 5,000-image training subset
