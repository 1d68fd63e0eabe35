# The effective-LR replay in miniature: does weight decay help only through the effective LR
# lr/||w||^2? The claim-2 setting (config/mini_vision_claim2.py) on the scale-invariant net
# (BatchNorm without affine parameters, the last layer frozen: Section 2.2), where lr/||w||^2 is
# the whole net's effective LR. Per seed: the run with weight decay, the run without, and the
# replay: no weight decay, the LR set at every step so that lr/||w||^2 follows the first run's.
#   python sweep.py train_resnet.py config/mini_vision_replay.py --weight_decay=0.05,0 \
#       --seed=0,1,2 --jobs=2
#   python sweep.py train_resnet.py config/mini_vision_replay.py --weight_decay=0 --seed=0,1,2 \
#       --jobs=2 --elr_from=out/mini_vision_replay_wd0.05_seed{seed} \
#       --out_dir=out/mini_vision_replay_replay_seed{seed}
#   python plot.py out/mini_vision_replay_* --figure=elr_replay --out=mini_elr_replay.png
exec(open('config/mini_vision_claim2.py').read())
scale_inv = True
