# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — PAT from the ground up: one masked layer
#
# **PAT** (*Pruning-Aware Tuning*, Liu et al., AAAI 2025) makes a large language model *narrower* while it
# is being instruction-tuned. It removes channels of the **hidden size** $d$ — the width of the residual
# stream that runs through every layer — and at the end folds everything into an ordinary, smaller dense
# model (Llama-2-7B: $d = 4096 \to d' = 3072$ at 25 %).
#
# This notebook builds the method up piece by piece, each with a small numeric check:
#
# 1. why **RMSNorm** lets a channel that is zero everywhere be cut out;
# 2. the **Hybrid Sparsification Module** (HSM) that sits where a block writes into the residual stream;
# 3. the **global mask** and its temperature/offset schedule — the paper's and the released code's, side by
#    side (with an interactive slider);
# 4. the **straight-through estimator** (STE) that makes "count the kept channels" trainable;
# 5. the two extra **losses** (sparsity and identity);
# 6. PAT attached to a one-layer Llama and **merged** into a narrower model with the same logits.
#
# Every formula is computed by `pat_lite`: beside each equation, `show_source` prints the function that
# implements it, straight from the package (the same code the tests check and the training runs).

# %% tags=["parameters"]
width = 16  # hidden size d of the toy vectors in sections 1-5
target = 12  # N_target: how many channels survive
hio_rank = 4  # rank r of the Hybrid-Identity-Operator
milestone = 100  # s0: from this step on the default (paper) schedule trains with the exact 0/1 mask
sparsity_steps = 150  # optimisation steps of the sparsity-loss demo
seed = 0
output_dir = "artifacts/nb01"
interactive = True  # False draws the slider's figure once (headless runs: papermill, static copies)

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from pat_lite import PATConfig
from pat_lite.core.hsm import HSM
from pat_lite.core.mask import (
    GlobalMask,
    StraightThroughStep,
    gate,
    gate_offset,
    gate_temperature,
    kept_channels,
    schedule_temperature,
    sparsity_loss,
)
from pat_lite.notebook import plots
from pat_lite.notebook.page import setup, show_source

OUT = setup(output_dir)
torch.manual_seed(seed)
torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ## 1. Why zero channels can be cut: RMSNorm keeps them at zero
#
# Every Llama block reads the residual stream $x \in \mathbb{R}^d$ through an RMSNorm:
#
# $$\mathrm{RMSNorm}(x)_i = \frac{x_i}{\sqrt{\tfrac{1}{d}\sum_{j=1}^{d} x_j^2 + \varepsilon}}\; g_i .$$
#
# If channel $i$ is $0$ for every token, the output on channel $i$ is $0$ too — whatever the other channels
# do. So the *input columns* of every linear layer that reads the stream ($W_q, W_k, W_v$, gate, up,
# `lm_head`) multiply zeros on channel $i$ and can be deleted. Only the mean in the denominator still
# "knows" there were $d$ channels: over the $d'$ kept channels the mean is $d/d'$ times larger, which we undo
# with $g'_i = g_i\sqrt{d/d'}$ and $\varepsilon' = \varepsilon\, d/d'$.
#
# (LayerNorm subtracts the mean first, which mixes all channels — that is why PAT needs RMSNorm models.)

# %%
d, d_keep = width, target
norm = torch.nn.RMSNorm(d, eps=1e-5)
with torch.no_grad():
    norm.weight.uniform_(0.5, 1.5)
x = torch.randn(3, d)  # three tokens
x[:, d_keep:] = 0.0  # the writers wrote nothing on the last channels
y = norm(x).detach()
print("zero channels are still zero after RMSNorm:", bool((y[:, d_keep:] == 0).all()))

# A reader (think q_proj) only needs its kept input columns, and a narrower RMSNorm does the rest.
reader = torch.nn.Linear(d, 8, bias=False)
narrow_norm = torch.nn.RMSNorm(d_keep, eps=1e-5 * d / d_keep)
with torch.no_grad():
    narrow_norm.weight.copy_(norm.weight[:d_keep] * (d / d_keep) ** 0.5)
    wide = reader(norm(x))
    narrow = narrow_norm(x[:, :d_keep]) @ reader.weight[:, :d_keep].T
gap = (wide - narrow).abs().max()
print(f"reader output, wide (d = {d}) vs narrow (d' = {d_keep}): max |difference| = {gap:.2e}")

# %% [markdown]
# The first token before and after the norm. The shaded channels are the ones the writers left at zero: they
# are still exactly zero after the norm (red dots on the zero line), so cutting them changes nothing.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
for ax, values, title in ((axes[0], x[0], "residual stream x (token 0)"), (axes[1], y[0], "RMSNorm(x)")):
    ax.bar(range(d_keep), values[:d_keep], color="tab:blue", label="kept channels")
    ax.plot(range(d_keep, d), values[d_keep:], "o", color="tab:red", label="zero channels")
    ax.axvspan(d_keep - 0.5, d - 0.5, color="tab:red", alpha=0.12)
    ax.set_title(title)
    ax.set_xlabel("channel")
axes[0].set_ylabel("value")
axes[1].legend(loc="lower right")
fig.suptitle(f"channels {d_keep}-{d - 1} (shaded) are zero before and after the norm, so they can be cut")
fig.tight_layout()
fig.savefig(OUT / "rmsnorm_zero_channels.png")
plt.show()

# %% [markdown]
# ## 2. The Hybrid Sparsification Module (HSM)
#
# Zeros must be *written* by every writer of the residual stream: the embedding, each attention output (after
# `o_proj`) and each MLP output (after `down_proj`). PAT puts an HSM after each of them — Llama-2-7B has
# $1 + 2\cdot 32 = 65$ — and all of them share **one** mask $M$:
#
# $$z = s \odot M \odot (D\,y), \qquad D = I + L_1 L_0 ,$$
#
# - $y \in \mathbb{R}^d$ is the writer's output, $z$ what is added to the residual stream;
# - $D$ is the **Hybrid-Identity-Operator** (HIO): the identity plus a trainable low-rank part
#   $L_0 \in \mathbb{R}^{r\times d}$, $L_1 \in \mathbb{R}^{d\times r}$. It can *move* information out of
#   the channels that will be dropped into the ones that stay. $L_1 = 0$ at the start, so $D = I$;
# - $s \in \mathbb{R}^d$ is a per-channel scale (starts at 1); $M \in \mathbb{R}^d$ the global mask.
#
# In `pat_lite` the forward pass is these few lines (it never forms the $d \times d$ matrix $D$; the
# optional rank scale $v$ belongs to the paper's identity-loss variant, docs/method.md §5):

# %%
show_source(HSM.forward)

# %%
hsm = HSM(width, hio_rank)
print(hsm)
print("D = I at initialisation:", torch.allclose(hsm.operator(), torch.eye(width)))

y = torch.randn(2, width)
ones = torch.ones(width)
binary = torch.zeros(width)
binary[:target] = 1.0
with torch.no_grad():
    print("mask of ones, fresh HSM -> z == y:", torch.allclose(hsm(y, ones), y))
    print("0/1 mask -> z is zero on the dropped channels:", bool((hsm(y, binary)[:, target:] == 0).all()))

d7b, r7b = 4096, 200
per_hsm = 2 * r7b * d7b + d7b  # L0, L1 and s
print(f"Llama-2-7B: 65 HSMs x {per_hsm:,} = {65 * per_hsm / 1e6:.1f} M trainable parameters (rank 200)")

# %% [markdown]
# ## 3. The global mask and its schedule
#
# The mask is not learned directly. PAT learns **proxy weights** $W_M \in \mathbb{R}^d$ (initialised at 0)
# and turns them into a mask with a sigmoid whose *temperature* $\tau$ grows and whose *offset* $\beta$
# shrinks with the training step $s$ (milestone $s_0$, by default a third of all steps):
#
# $$\tau(s) = \frac{1}{1 - \ln(\max(1,s)) / \ln(s_0) + 10^{-6}}, \qquad
#   \beta(s) = \max\!\left(0.5 - \frac{s}{s_0},\, 0\right), \qquad
#   M = \mathrm{sigmoid}\big(\tau(s)\, W_M\big) + \beta(s).$$
#
# - At $s = 0$ (where $W_M = 0$): $\mathrm{sigmoid}(0) + 0.5 = 1$ for every channel — the model is unchanged.
# - $\beta$ reaches 0 at $s_0/2$; as $\tau \to \infty$ the sigmoid becomes a step:
#   $M_i \to \mathbb{1}(W_{M,i} > 0)$.
# - The exponent is clamped at 10, as in the released code; at inference the mask is exactly 0/1.

# %%
show_source(gate_temperature, gate_offset, gate)

# %% [markdown]
# The gate curve $M_i$ as a function of the proxy $W_{M,i}$, at several steps: a gentle slope around 1 at
# the start, a step between 0 and 1 from about $0.5\,s_0$ on. Up to $0.8\,s_0$ every schedule draws these
# same curves.

# %%
w_axis = torch.linspace(-1.0, 1.0, 201)
fig, ax = plt.subplots(figsize=(6, 3.6))
for p in (0.0, 0.1, 0.3, 0.5, 0.8):
    ax.plot(w_axis, gate(w_axis, round(p * milestone), milestone), label=f"s = {p:.1f} s0")
ax.set_xlabel(r"proxy weight $W_{M,i}$")
ax.set_ylabel(r"mask value $M_i$")
ax.set_title("gate curve at several steps")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "gate_curves.png")
plt.show()

# %% [markdown]
# ### Two schedules after $0.8\,s_0$: the paper's and the released code's
#
# Late in training the paper and its authors' code part ways (docs/method.md §4):
#
# - **the paper's Eq. 6** (`PATConfig(schedule="paper")`): $\tau$ follows its formula up to $s_0$ and is
#   $1/\varepsilon = 10^6$ from $s_0$ on — the gate *is* the exact 0/1 mask, the one the merged model will
#   have, for the rest of training. Until $s_0$ the task loss still moves $W_M$ through the gate.
# - **the released code** (`PATConfig(schedule="released")`): from $0.8\,s_0$ on, $\tau$ stays at
#   $\tau(0.8\,s_0)$ and $W_M$ is detached inside the gate; the gate stays soft to the end, so a channel
#   that is about to be cut still passes part of its signal.
#
# `GlobalMask.training_mask` picks between them:

# %%
show_source(GlobalMask.training_mask)

# %% [markdown]
# The same two channels, $W_M = \pm 0.05$, under both schedules: $\tau$, $\beta$, their gate over the
# steps, and — bottom right — the gate as a function of $W_M$ after $s_0$, which is what the model trains
# with from then on.

# %%
fig = plots.plot_schedules(milestone)
fig.savefig(OUT / "schedules.png")
display(fig)
for s in (0.8, 0.9, 1.0):
    step = round(s * milestone)
    taus = {name: schedule_temperature(step, milestone, name) for name in ("paper", "released")}
    print(f"s = {s:.1f} s0: tau paper {taus['paper']:,.1f}, released {taus['released']:,.1f}")
late = plots.gate_values(torch.tensor([0.05, -0.05]), [milestone], milestone, "released")[0]
print(f"released schedule from s0 on: M = {late[0]:.2f} for W_M = +0.05, {late[1]:.2f} for W_M = -0.05")
print("pat_lite's default schedule:", PATConfig().schedule)

# %% [markdown]
# **Which one pat_lite uses, and why.** The default is the paper's Eq. 6 (printed above). Under the
# released schedule the model that trains is not the model that is kept: training sees a soft mask (a
# channel with $W_M = -0.05$ still passes a quarter of its signal here, printed above), the merge applies
# the exact one, and in short runs the two models differ a great deal (docs/method.md §10-§11 give the
# measurements). Eq. 6 trains the last two thirds of the steps under the mask the merged model has.
#
# The paper's published numbers, though, came from the released code. To compare with them (for example
# its 60.02 for Llama-2-7B at 25 %, notebook 03), select it: `PATConfig(schedule="released")`, or
# `pat.schedule=released` as a training setting.

# %% [markdown]
# **Try it** (in JupyterLab, `make lab`): move the slider to see the gate curve at step $s$ under both
# schedules. In a static copy of this notebook the figures above show the same curves at fixed steps.


# %%
def show_gate(progress=0.9):
    step = round(progress * milestone)
    values = {name: plots.gate_values(w_axis, [step], milestone, name)[0] for name in ("paper", "released")}
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, style in (("paper", "-"), ("released", "--")):
        tau = schedule_temperature(step, milestone, name)
        ax.plot(w_axis, values[name], style, label=f"{name}: tau = {tau:,.1f}")
    ax.set_ylim(-0.05, 1.55)
    ax.set_xlabel(r"proxy weight $W_{M,i}$")
    ax.set_ylabel(r"$M_i$")
    ax.set_title(f"s = {step} (s0 = {milestone}), beta = {gate_offset(step, milestone):.2f}")
    ax.legend()
    plt.show()


if interactive:
    slider = widgets.FloatSlider(value=0.9, min=0.0, max=1.2, step=0.02, description="s / s0")
    _ = widgets.interact(show_gate, progress=slider)
else:
    show_gate(0.9)

# %% [markdown]
# The mask lives in one module, `GlobalMask`, shared by every HSM. In training mode it follows the schedule;
# in evaluation mode it is the exact 0/1 mask over the channels `kept_channels` selects (those with
# $W_M > 0$, or the $N$ largest if the count is off) — the same channels the merge keeps.
#
# A fresh mask has $W_M = 0$, so at step 0 it is exactly 1 everywhere:

# %%
mask = GlobalMask(width, target)
mask.milestone = milestone
mask.train()
mask.step = 0
print(f"fresh mask (W_M = 0), train, s = 0: M = {mask().detach().numpy()}")

# %% [markdown]
# Now give it proxies that training might have reached — `target` channels positive, the others negative —
# and read the *same* $W_M$ at several steps. At $s = 0$ the mask is no longer exactly 1: it is
# $\mathrm{sigmoid}(\tau(0)\,W_M) + 0.5$ with $\tau(0) = 1$, so a proxy of $\pm 0.6$ gives $1 \pm 0.15$. As
# $s$ grows, $\beta$ falls and $\tau$ rises and the values separate, but at $0.9\,s_0$ the gate is still
# soft. From $s_0$ on the default (paper) schedule gives exactly 0 and 1, the mask of evaluation and of
# the merged model; the last row shows the released schedule at $s_0$, still soft.

# %%
with torch.no_grad():
    mask.proxies.copy_(
        torch.cat([torch.linspace(-0.5, -0.05, width - target), torch.linspace(0.05, 0.6, target)])
    )
rows = {"W_M": mask.proxies.detach().numpy()}
for step in (0, milestone // 4, milestone // 2, 9 * milestone // 10, milestone):
    mask.step = step
    rows[f"M, train, s = {step}, {mask.schedule}"] = mask().detach().numpy()
released = plots.gate_values(mask.proxies.detach(), [milestone], milestone, "released")[0]
rows[f"M, train, s = {milestone}, released"] = released.numpy()
mask.eval()
rows["M, eval (exact 0/1)"] = mask().numpy()
display(pd.DataFrame(rows).T.rename(columns=lambda i: f"ch {i}").round(2))
print("kept channels:", kept_channels(mask.proxies, target).tolist(), "| active:", mask.active_channels())

# %% [markdown]
# ## 4. The straight-through estimator
#
# PAT wants exactly $N$ channels to survive. The natural penalty counts them,
# $\sum_i \mathbb{1}(W_{M,i} \ge 0)$, but a step function has zero gradient almost everywhere, so nothing
# would move. The **straight-through estimator** uses the hard step in the forward pass and pretends it was
# the identity in the backward pass: $\partial\,\mathrm{STE}(w)/\partial w := 1$.

# %%
show_source(StraightThroughStep)

# %%
w = torch.tensor([-0.3, -0.01, 0.0, 0.2, 0.7], requires_grad=True)
hard = StraightThroughStep.apply(w)
hard.sum().backward()
print("forward  STE(w) =", hard.detach())
print("backward dSum/dw =", w.grad, " (identity, although the step itself is flat)")
print("plain (w >= 0) has a gradient?", (w >= 0).float().requires_grad)

# %% [markdown]
# ## 5. The two extra losses
#
# PAT trains on **instruction loss + sparsity loss + identity loss**.
#
# **Sparsity loss** (released code): the count term pulls the number of active channels to $N$; the two pull
# terms push every proxy away from 0, towards $\pm 0.5$, so the decision becomes clear-cut:
#
# $$\mathcal{L}_\text{sparse} = 10\,\frac{\left|\sum_i \mathrm{STE}(W_{M,i}) - N\right|}{N}
#   + \operatorname*{mean}_{W_{M,i} > 0} (W_{M,i} - 0.5)^2
#   + \operatorname*{mean}_{W_{M,i} \le 0} (W_{M,i} + 0.5)^2 .$$

# %%
show_source(sparsity_loss)

# %% [markdown]
# Below, only this loss is optimised, starting from tiny random proxies (in real training the instruction
# loss provides that small preference for some channels): the count settles at $N$ and the proxies split
# into two clusters.

# %%
torch.manual_seed(seed)
proxies = (0.01 * torch.randn(width)).requires_grad_()
optimizer = torch.optim.Adam([proxies], lr=0.02)
losses, active = [], []
for _ in range(sparsity_steps):
    loss = sparsity_loss(proxies, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    active.append(int((proxies > 0).sum()))
print("final active channels:", active[-1], "target:", target)

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
axes[0].semilogy(losses)
axes[0].set_title("sparsity loss")
axes[1].plot(active)
axes[1].axhline(target, color="grey", ls="--", label=f"N = {target}")
axes[1].set_title("active channels")
axes[1].legend()
axes[2].hist(proxies.detach().numpy(), bins=20)
axes[2].set_title(r"final $W_M$: two clusters near $\pm 0.5$")
axes[2].set_xlabel(r"$W_M$")
axes[2].set_ylabel("channels")
for ax in axes[:2]:
    ax.set_xlabel("optimisation step")
fig.tight_layout()
fig.savefig(OUT / "sparsity_loss_demo.png")
plt.show()

# %% [markdown]
# **Identity loss** keeps the low-rank part of the HIO close to a rotation, so that *scaling* is left to
# $s$ and the HIO only *moves* information between channels:
#
# - released code (the default): $\mathcal{L}_\text{id} = \mathrm{MSE}(L_0 L_0^\top, I_r)$;
# - paper: $\|L_0 L_0^\top - I\| + \|L_1^\top L_1 - I\|$.
#
# Both are summed over all HSMs.

# %%
show_source(HSM.identity_loss)

# %% [markdown]
# Optimising the released form alone makes the rows of $L_0$ orthonormal ($L_0 L_0^\top \to I_r$):

# %%
hsm = HSM(width, hio_rank)
print(f"fresh HSM: released = {hsm.identity_loss('released'):.4f}, paper = {hsm.identity_loss('paper'):.4f}")
optimizer = torch.optim.Adam([hsm.L0], lr=0.02)
curve = []
for _ in range(200):
    loss = hsm.identity_loss("released")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    curve.append(loss.item())
print("after 200 steps: L0 L0^T =")
print((hsm.L0 @ hsm.L0.T).detach())

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(curve)
ax.set_xlabel("optimisation step")
ax.set_title("identity loss (released form) alone")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. PAT on a real (tiny) Llama, and the merge
#
# `attach_pat` inserts the global mask and the $1 + 2L$ HSMs into a stock `transformers` model (through
# forward hooks; the model keeps its class and parameter names). At step 0 the model computes exactly what
# it computed before.

# %%
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from pat_lite import PATConfig, attach_pat, get_pat, merge_pat, pat_losses, set_pat_step
from pat_lite.core.merge import merged_state_dict

torch.manual_seed(seed)
config = LlamaConfig(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip
block = LlamaForCausalLM(config).eval()
ids = torch.randint(0, config.vocab_size, (2, 12))
with torch.no_grad():
    before = block(input_ids=ids).logits

attach_pat(block, PATConfig(pruning_ratio=0.25, hio_rank=8, milestone_step=milestone))
pat = get_pat(block)
print(pat.config.target_width, "of", config.hidden_size, "channels will be kept;", len(pat.hsms), "HSMs")
block.train()
set_pat_step(block, 0)
with torch.no_grad():
    at_step0 = block(input_ids=ids).logits
print(f"step 0, training mode: max |logit change| from attaching PAT = {(at_step0 - before).abs().max():.1e}")
print("PAT losses at step 0:", {k: round(v.item(), 4) for k, v in pat_losses(block).items()})

# %% [markdown]
# After training, `merge_pat` folds everything into the weights and slices out the kept channels $K$
# ($a = s \odot M$, $A = \mathrm{diag}(a)$):
#
# - writers `o_proj`, `down_proj`: $W' = (A\,D\,W)[K, :]$ (fold the HSM, keep the rows $K$);
# - embedding $E$ (vocab × d): $E' = (E\,D^\top A)[:, K]$;
# - readers q, k, v, gate, up, `lm_head`: $W' = W[:, K]$ (keep the input columns $K$);
# - RMSNorm: $g' = g[K]\sqrt{d/d'}$ and $\varepsilon' = \varepsilon\, d/d'$ (section 1 above).
#
# Its core computes exactly these formulas, one weight at a time (`merge_pat` around it merges LoRA first,
# builds the narrower config and loads these weights into a fresh model of the same class):

# %%
show_source(merged_state_dict)

# %% [markdown]
# The result is an ordinary `LlamaForCausalLM` with `hidden_size` $= d'$, and it must give the **same
# logits** as the tuned model with its final 0/1 mask. We check that on the one-layer Llama, with its PAT
# weights set at random as if it had been trained.

# %%
# Pretend training happened: random HIO and scales, a mask with exactly N positive proxies.
generator = torch.Generator().manual_seed(seed + 1)
with torch.no_grad():
    for module in pat.hsms.values():
        module.L1.copy_(0.1 * torch.randn(module.L1.shape, generator=generator))
        module.scale.copy_(0.5 + torch.rand(module.scale.shape, generator=generator))
    new = -0.5 * torch.rand(pat.mask.width, generator=generator)
    keep = torch.randperm(pat.mask.width, generator=generator)[: pat.config.target_width]
    new[keep] = 0.5 * torch.rand(keep.numel(), generator=generator) + 0.01
    pat.mask.proxies.copy_(new)

block.eval()  # exact 0/1 mask
with torch.no_grad():
    tuned = block(input_ids=ids).logits
    merged = merge_pat(block)
    folded = merged(input_ids=ids).logits
diff = (tuned - folded).abs().max().item()
print(type(merged).__name__, "hidden_size", config.hidden_size, "->", merged.config.hidden_size)
print(f"tuned (masked) vs merged: max |logit difference| = {diff:.2e}")
assert diff < 1e-4

# %%
shapes = {name: tuple(p.shape) for name, p in block.named_parameters() if not name.startswith("pat.")}
for name, p in merged.named_parameters():
    print(f"  {name:45s} {str(shapes[name]):12s} -> {tuple(p.shape)}")


def count(model):  # the model's own weights; PAT's are folded into them by the merge
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("pat."))


print(f"parameters: {count(block):,} -> {count(merged):,}")

# %% [markdown]
# The merged folder is an ordinary checkpoint: plain `transformers` loads it, without `pat_lite`.

# %%
merged_dir = OUT / "merged_block"
merged.save_pretrained(merged_dir)
reloaded = AutoModelForCausalLM.from_pretrained(merged_dir).eval()  # plain transformers, no pat_lite
with torch.no_grad():
    again = reloaded(input_ids=ids).logits
print(f"reloaded from {merged_dir}: max |logit difference| = {(again - tuned).abs().max():.2e}")

fig, ax = plt.subplots(figsize=(4.2, 4))
ax.scatter(tuned.flatten(), folded.flatten(), s=3, alpha=0.4)
lims = [tuned.min().item(), tuned.max().item()]
ax.plot(lims, lims, color="grey", lw=1)
ax.set_xlabel(f"tuned model, d = {config.hidden_size} (0/1 mask)")
ax.set_ylabel(f"merged model, d' = {merged.config.hidden_size}")
ax.set_title("same logits")
fig.tight_layout()
fig.savefig(OUT / "merge_logits.png")
plt.show()

# %% [markdown]
# ## What next
#
# - **02** trains PAT on a real model — SmolLM2-135M offline (embedded), TinyLlama-1.1B when the hub is
#   reachable — and watches the mask.
# - **03** is the paper's Llama-2-7B recipe for one A100.
# - **04** evaluates dense vs LoRA vs PAT with lm-eval and measures speed; **05** runs the ablations.
