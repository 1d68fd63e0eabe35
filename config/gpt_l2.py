# Appendix: coupled L2 regularisation instead of decoupled weight decay (Adam + L2): the
# gradient gets wd*p before Adam's normalisation. The authors added l2_reg*||w||^2 to the
# loss, whose gradient is 2*l2_reg*w, so their l2_reg = 1e-6 ... 1e-3 is weight_decay = 2e-6 ... 2e-3 here:
#   python train_gpt.py config/gpt_l2.py --weight_decay=2e-5
dataset = 'openwebtext'
wd_mode = 'l2'
weight_decay = 2e-6
