# Figure 3: ResNet-18 with BatchNorm, lr 0.1 and weight decay 0.015 at a constant LR (the
# authors' traceh.py has no schedule); every 2 epochs a copy is fine-tuned for 100 epochs at
# lr_flow = 1e-3 without weight decay, and the trace of the Hessian of the iterate and of the
# fine-tuned copy is logged (trace_hessian, flow_trace_hessian). Compare with --weight_decay=0.
#   python train_resnet.py config/resnet_traceh_fig3.py
#   python train_resnet.py config/resnet_traceh_fig3.py --weight_decay=0
arch = 'resnet18'
batch_norm = True
momentum = 0.0
batch_size = 128
lr = 0.1
weight_decay = 0.015
epochs = 100
first_decay = 1.0  # no drop
lr_flow = 1e-3
flow_every = 2
flow_epochs = 100
eval_every = 2
hessian_every = 2
hessian_n = 5000  # the authors' 5,000-image training subset
