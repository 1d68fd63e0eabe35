# The paper's main LLM runs (Sec. 3, Fig. 3 left; the authors' README "cosine decay runs"):
# GPT-2-small without biases, context 256, OpenWebText, AdamW(0.9, 0.95) at lr 6e-4, 400 warmup
# steps, cosine decay to 6e-5 over 50,000 iterations, batch 8 x 32 sequences, clip 1.0.
# These are train_gpt.py's defaults; the runs differ only in the weight decay:
#   python train_gpt.py config/gpt_cosine.py --weight_decay=0      # -> out/gpt_cosine_wd0
#   python train_gpt.py config/gpt_cosine.py --weight_decay=0.1    # -> out/gpt_cosine_wd0.1
#   python train_gpt.py config/gpt_cosine.py --weight_decay=0.3    # -> out/gpt_cosine_wd0.3
# On a large GPU add --micro_batch_size=64 (or 256): the same 256 sequences per iteration, drawn
# at once, in 4 forward passes instead of 32; the update is the same up to float rounding.
dataset = 'openwebtext'
decay_lr = True
learning_rate = 6e-4
min_lr = 6e-5
max_iters = 50000
