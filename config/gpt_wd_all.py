# Appendix: weight decay on every parameter, LayerNorm gains included (the authors'
# wd_substrings_include='wte wpe mlp attn lm_head ln'; with bias=False that is 'all').
# They swept 0.003, 0.01, 0.03, 0.1, 0.15, 0.2 and 0.3 on the main cosine run:
#   python train_gpt.py config/gpt_wd_all.py --weight_decay=0.03
dataset = 'openwebtext'
wd_params = 'all'
weight_decay = 0.1
