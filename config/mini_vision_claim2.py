# Claim 2 in miniature: does the large-LR + weight-decay run generalise better once the LR drops?
# The grid's net (config/mini_vision_grid.py) on twice as many images, 2,000, with the 3,000
# training images left out as a held-out set (heldout_err) beside the 1,000 test images, so that
# a 2-point difference stands above one run's noise. Chosen on the held-out error of one seed
# before any test error was read (docs/reproducing.md: what else was tried).
#   python sweep.py train_resnet.py config/mini_vision_claim2.py --weight_decay=0.05,0 \
#       --seed=0,1,2 --jobs=2
#   python plot.py out/mini_vision_claim2_* --y=train_loss,heldout_err,test_err \
#       --out=mini_claim2.png
exec(open('config/mini_vision_grid.py').read())  # the same net, batch, LRs and EMA
n_train = 2000
heldout = True
epochs = 40
first_decay = 0.75  # the LR drops to lr_flow after epoch 30
eval_batch_size = 500
