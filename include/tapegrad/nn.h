/**
 * @file
 * tapegrad's nn part: parameter registries, initialisation, layers built from
 * graph ops, optimizers, data readers and checkpoints. Included by
 * tapegrad.h; the AD core (tensors, tape, ops, gradient check) needs none of
 * it. Everything here is written against the public core API.
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include <tapegrad/tapegrad.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ====== nn: named parameters ====== */

/** A registry name -> parameter tensor, in insertion order, owning its tensors. */
typedef struct tg_params tg_params;

/* Every function below that has no tape and fails (returns NULL, -1 or a
 * status other than TG_OK) leaves its status and a message naming it and what
 * was wrong in tg_last_error() (tapegrad.h); the file functions also fill
 * their 'err' argument with the same error. */

/** An empty registry, the caller's to free with tg_params_free; NULL when out of memory. */
TG_API tg_params *tg_params_new(void);
/** Frees the registry and every parameter it owns, with their gradients; NULL is fine. */
TG_API void tg_params_free(tg_params *ps);
/** A new zero-filled parameter owned by the registry, requiring grad. NULL for a
 * duplicate or empty name, a bad shape (TG_ERR_ARG), a bad dtype
 * (TG_ERR_DTYPE), or no memory (TG_ERR_NOMEM), with the reason in
 * tg_last_error. The registry keeps its own copy of the name and frees the
 * tensor and its gradient with itself. */
TG_API tg_tensor *tg_params_add(tg_params *ps, const char *name, tg_dtype dt, int rank,
                                const int64_t *shape);
/** The parameter called 'name', owned by the registry; NULL if absent (then
 * TG_ERR_ARG "no parameter" in tg_last_error). O(1). */
TG_API tg_tensor *tg_params_get(const tg_params *ps, const char *name);
/** The number of parameters; 0 for NULL. */
TG_API size_t tg_params_count(const tg_params *ps);
/** The i-th parameter in insertion order (stable), and its name if 'name' is
 * not NULL; NULL (and name NULL) when i is out of range. */
TG_API tg_tensor *tg_params_at(const tg_params *ps, size_t i, const char **name);
/** Zeroes the gradient of every parameter that has one; call it between steps. */
TG_API void tg_params_zero_grad(tg_params *ps);
/** The number of elements over all parameters. */
TG_API int64_t tg_params_numel(const tg_params *ps);

/* ====== nn: initialisation (the RNG is in tapegrad.h) ====== */

/** How tg_init_tensor fills a tensor. */
typedef enum tg_init {
    TG_INIT_ZEROS,          /**< all zero */
    TG_INIT_XAVIER_UNIFORM, /**< U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
    TG_INIT_XAVIER_NORMAL,  /**< N(0, 2 / (fan_in + fan_out)) */
    TG_INIT_HE_UNIFORM,     /**< U(-a, a), a = sqrt(6 / fan_in) */
    TG_INIT_HE_NORMAL,      /**< N(0, 2 / fan_in) */
    /** U(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for the weights and
     * biases of Linear, Conv and RNN layers (kaiming_uniform with a = sqrt 5) */
    TG_INIT_FAN_IN_UNIFORM,
} tg_init;

/** Fills t, drawing in element order (an F32 tensor gets the F64 values
 * rounded); TG_ERR_ARG for a NULL tensor or rng, a fan below 1 or an unknown
 * kind, and then t is untouched; TG_ERR_DTYPE for an I64 tensor (the reason
 * in tg_last_error). TG_INIT_ZEROS
 * needs neither fans nor rng. */
TG_API tg_status tg_init_tensor(tg_tensor *t, tg_init kind, int64_t fan_in, int64_t fan_out,
                                tg_rng *r);

/* ====== nn: layers (graph ops only; backprop falls out of the tape) ====== */

/** The activation tg_activate records: none, ReLU, tanh or the logistic sigmoid. */
typedef enum tg_activation { TG_ACT_NONE, TG_ACT_RELU, TG_ACT_TANH, TG_ACT_SIGMOID } tg_activation;

/** Z = X W + b with X [batch,in], W [in,out], b [out]: tg_matmul then tg_add_bias. */
TG_API tg_tensor *tg_dense(tg_tape *tp, tg_tensor *x, tg_tensor *w, tg_tensor *b);
/** act(x) for one activation kind; TG_ACT_NONE returns x itself and records
 * nothing. Like any op, NULL on a failed tape; an unknown kind is TG_ERR_ARG. */
TG_API tg_tensor *tg_activate(tg_tape *tp, tg_tensor *x, tg_activation act);

/** A multilayer perceptron: layer sizes, activations and its parameters' handles. */
typedef struct tg_mlp tg_mlp;

/** Registers "<prefix>.<l>.weight" [sizes[l], sizes[l+1]] and "<prefix>.<l>.bias"
 * for l = 0..n_layers-1 in 'ps' (He init before ReLU, Xavier otherwise, zero
 * biases) and remembers acts[l], applied after layer l. NULL on bad arguments
 * (TG_ERR_ARG or TG_ERR_DTYPE) or no memory, with the reason in tg_last_error.
 * Weights are TG_INIT_HE_UNIFORM when acts[l] is TG_ACT_RELU and
 * TG_INIT_XAVIER_UNIFORM otherwise, with fans sizes[l] and sizes[l+1], drawn
 * from 'r' layer by layer. On failure (bad arguments, a name already taken, no
 * memory) nothing stays registered. */
TG_API tg_mlp *tg_mlp_new(tg_params *ps, const char *prefix, int n_layers, const int64_t *sizes,
                          const tg_activation *acts, tg_dtype dt, tg_rng *r);
/** Frees the network description; its parameters stay in their registry. NULL is fine. */
TG_API void tg_mlp_free(tg_mlp *m);
/** Records the network on x [batch, sizes[0]] and returns [batch, sizes[n_layers]]:
 * per layer tg_dense then tg_activate, so gradients come from those ops. */
TG_API tg_tensor *tg_mlp_forward(tg_tape *tp, const tg_mlp *m, tg_tensor *x);

/* ====== nn: layers for CNNs, RNNs and attention ======
 * Each layer is a plain struct of parameter handles (owned by the registry)
 * and settings, filled by its _init function, which registers the layer's
 * parameters as "<prefix>.<name>" with PyTorch's default initialisation and
 * names. Nothing to free. An _init that fails returns its status, says why in
 * 'err' (may be NULL) and leaves nothing registered. The forward functions
 * only record ops, so every gradient comes from those ops' VJPs; like any op
 * they return NULL with the tape's error set, naming the layer. */

/** y = x W + b over the last axis: W [in,out] (the transpose of PyTorch's
 * Linear.weight), b [out] or NULL. */
typedef struct tg_linear {
    tg_tensor *weight; /**< "<prefix>.weight" [in,out], U(-1/sqrt(in), 1/sqrt(in)) */
    tg_tensor *bias;   /**< "<prefix>.bias" [out], same bound; NULL without bias */
} tg_linear;

/** Registers a linear layer; TG_ERR_ARG for NULL arguments or sizes below 1,
 * a name already taken, TG_ERR_NOMEM. */
TG_API tg_status tg_linear_init(tg_linear *l, tg_params *ps, const char *prefix, int64_t in,
                                int64_t out, bool bias, tg_dtype dt, tg_rng *r, tg_error *err);
/** x [..., in] -> [..., out] (rank 1..4). */
TG_API tg_tensor *tg_linear_forward(tg_tape *tp, const tg_linear *l, tg_tensor *x);

/** A 1-D or 2-D convolution layer (torch.nn.Conv1d / Conv2d). */
typedef struct tg_conv_layer {
    int dims;          /**< 1 or 2 spatial dimensions */
    tg_conv_opts opts; /**< stride, padding, dilation, groups */
    tg_tensor *weight; /**< "<prefix>.weight" [O, C/groups, K] or [O, C/groups, KH, KW] */
    tg_tensor *bias;   /**< "<prefix>.bias" [O], or NULL */
} tg_conv_layer;

/** Registers a convolution of 'in_ch' to 'out_ch' channels with kernel
 * kernel[0] (dims 1) or kernel[0] x kernel[1] (dims 2); opts may be NULL.
 * Weights and bias U(-a, a), a = 1/sqrt(C/groups * kernel area), as PyTorch. */
TG_API tg_status tg_conv_layer_init(tg_conv_layer *l, tg_params *ps, const char *prefix, int dims,
                                    int64_t in_ch, int64_t out_ch, const int kernel[2],
                                    const tg_conv_opts *opts, bool bias, tg_dtype dt, tg_rng *r,
                                    tg_error *err);
/** tg_conv1d or tg_conv2d with the layer's weights and options. */
TG_API tg_tensor *tg_conv_layer_forward(tg_tape *tp, const tg_conv_layer *l, tg_tensor *x);

/** Batch normalisation (torch.nn.BatchNorm1d / BatchNorm2d) over C channels. */
typedef struct tg_batch_norm_layer {
    tg_tensor *weight;       /**< "<prefix>.weight" [C], ones */
    tg_tensor *bias;         /**< "<prefix>.bias" [C], zeros */
    tg_tensor *running_mean; /**< "<prefix>.running_mean" [C], zeros, never requiring grad */
    tg_tensor *running_var;  /**< "<prefix>.running_var" [C], ones, never requiring grad */
    double momentum;         /**< 0.1 */
    double eps;              /**< 1e-5 */
} tg_batch_norm_layer;

/** Registers the four tensors; the running statistics are in the registry so
 * checkpoints keep them, and require no grad so optimizers leave them alone. */
TG_API tg_status tg_batch_norm_layer_init(tg_batch_norm_layer *l, tg_params *ps,
                                          const char *prefix, int64_t channels, tg_dtype dt,
                                          tg_error *err);
/** tg_batch_norm on x [N,C] or [N,C,H,W]: batch statistics (and running ones
 * updated) when 'training', the running ones otherwise. Record one tape per
 * mode: both share the parameters and statistics. */
TG_API tg_tensor *tg_batch_norm_layer_forward(tg_tape *tp, const tg_batch_norm_layer *l,
                                              tg_tensor *x, bool training);

/** Layer normalisation over the last axis (torch.nn.LayerNorm(D)). */
typedef struct tg_layer_norm_layer {
    tg_tensor *weight; /**< "<prefix>.weight" [D], ones */
    tg_tensor *bias;   /**< "<prefix>.bias" [D], zeros */
    double eps;        /**< 1e-5 */
} tg_layer_norm_layer;

/** Registers gamma and beta of size 'dim'. */
TG_API tg_status tg_layer_norm_layer_init(tg_layer_norm_layer *l, tg_params *ps,
                                          const char *prefix, int64_t dim, tg_dtype dt,
                                          tg_error *err);
/** tg_layer_norm with the layer's parameters. */
TG_API tg_tensor *tg_layer_norm_layer_forward(tg_tape *tp, const tg_layer_norm_layer *l,
                                              tg_tensor *x);

/** An LSTM cell (torch.nn.LSTMCell), gates in PyTorch's order i, f, g, o. */
typedef struct tg_lstm_cell {
    tg_tensor *w_ih; /**< "<prefix>.weight_ih" [in, 4H] */
    tg_tensor *w_hh; /**< "<prefix>.weight_hh" [H, 4H] */
    tg_tensor *b_ih; /**< "<prefix>.bias_ih" [4H] */
    tg_tensor *b_hh; /**< "<prefix>.bias_hh" [4H] */
    int64_t hidden;  /**< H */
} tg_lstm_cell;

/** Registers an LSTM cell; every tensor U(-1/sqrt(H), 1/sqrt(H)) as PyTorch. */
TG_API tg_status tg_lstm_cell_init(tg_lstm_cell *c, tg_params *ps, const char *prefix, int64_t in,
                                   int64_t hidden, tg_dtype dt, tg_rng *r, tg_error *err);
/** One step: x [N,in], state h, c [N,H] (both NULL for a zero state) -> the
 * new h, and the new c in *c_out. c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),
 * h' = σ(o) ⊙ tanh(c'), built from matmul, slice and elementwise ops. */
TG_API tg_tensor *tg_lstm_cell_forward(tg_tape *tp, const tg_lstm_cell *cell, tg_tensor *x,
                                       tg_tensor *h, tg_tensor *c, tg_tensor **c_out);

/** A GRU cell (torch.nn.GRUCell), gates in PyTorch's order r, z, n. */
typedef struct tg_gru_cell {
    tg_tensor *w_ih; /**< "<prefix>.weight_ih" [in, 3H] */
    tg_tensor *w_hh; /**< "<prefix>.weight_hh" [H, 3H] */
    tg_tensor *b_ih; /**< "<prefix>.bias_ih" [3H] */
    tg_tensor *b_hh; /**< "<prefix>.bias_hh" [3H] */
    int64_t hidden;  /**< H */
} tg_gru_cell;

/** Registers a GRU cell; every tensor U(-1/sqrt(H), 1/sqrt(H)) as PyTorch. */
TG_API tg_status tg_gru_cell_init(tg_gru_cell *c, tg_params *ps, const char *prefix, int64_t in,
                                  int64_t hidden, tg_dtype dt, tg_rng *r, tg_error *err);
/** One step: x [N,in], h [N,H] (NULL for zeros) -> h' = (1 - z) ⊙ n + z ⊙ h with
 * n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)). */
TG_API tg_tensor *tg_gru_cell_forward(tg_tape *tp, const tg_gru_cell *cell, tg_tensor *x,
                                      tg_tensor *h);

/** Multi-head self-attention (torch.nn.MultiheadAttention with batch_first,
 * query = key = value = x). */
typedef struct tg_mha {
    tg_linear q;   /**< "<prefix>.q": the query projection, [D,D], zero bias */
    tg_linear k;   /**< "<prefix>.k": the key projection, [D,D], zero bias */
    tg_linear v;   /**< "<prefix>.v": the value projection, [D,D], zero bias */
    tg_linear out; /**< "<prefix>.out": the output projection, [D,D], zero bias */
    int64_t heads; /**< D divides by it */
} tg_mha;

/** Registers the four projections of a d_model-wide block with 'heads' heads:
 * q, k, v Xavier-uniform over the stacked [D, 3D] projection, out U(±1/sqrt(D)),
 * biases zero (PyTorch's initialisation). TG_ERR_ARG when heads does not divide d_model. */
TG_API tg_status tg_mha_init(tg_mha *m, tg_params *ps, const char *prefix, int64_t d_model,
                             int64_t heads, tg_dtype dt, tg_rng *r, tg_error *err);
/** x [B,T,D] -> [B,T,D]: softmax(Q Kᵀ / sqrt(D/heads) + mask) V per head, the
 * heads concatenated and projected. 'mask' is added to the scores: NULL, or
 * [T,T] (tg_causal_mask). */
TG_API tg_tensor *tg_mha_forward(tg_tape *tp, const tg_mha *m, tg_tensor *x, tg_tensor *mask);
/** A new caller-owned [T,T] additive mask: 0 where key <= query, -inf above. */
TG_API tg_tensor *tg_causal_mask(int64_t t, tg_dtype dt);

/* ====== nn: optimizers ====== */

/** The update rule of a tg_optim. */
typedef enum tg_optim_kind { TG_OPTIM_SGD, TG_OPTIM_ADAM, TG_OPTIM_ADAMW } tg_optim_kind;

#define TG_OPTIM_SET_BETA1 1u /**< tg_optim_opts.set: take beta1 as written, 0 included */
#define TG_OPTIM_SET_BETA2 2u /**< tg_optim_opts.set: take beta2 as written, 0 included */
#define TG_OPTIM_SET_EPS   4u /**< tg_optim_opts.set: take eps as written, 0 included */

/** PyTorch's semantics. SGD: g = grad + wd p; buf = mu buf + (1 - dampening) g
 * (buf = g at the first step); g = nesterov ? g + mu buf : buf; p -= lr g.
 * Adam: g = grad + wd p; AdamW: p -= lr wd p, then Adam with wd = 0.
 *
 * Written with designated initializers, fields left out are 0, which is the
 * value for every field except Adam's beta1, beta2 and eps: those take
 * PyTorch's defaults (0.9, 0.999, 1e-8) when left 0, and the value written
 * otherwise. To ask for 0 itself, set the field's bit in 'set':
 * (tg_optim_opts){.kind = TG_OPTIM_ADAM, .lr = 1e-3, .set = TG_OPTIM_SET_BETA1}
 * is Adam with beta1 = 0 (RMSProp-like), the other two at their defaults. */
typedef struct tg_optim_opts {
    tg_optim_kind kind;  /**< SGD, Adam or AdamW */
    double lr;           /**< the learning rate, finite and >= 0 (0 updates nothing) */
    double momentum;     /**< SGD; 0 for none */
    double dampening;    /**< SGD */
    bool nesterov;       /**< SGD; needs momentum > 0 and dampening = 0 */
    double weight_decay; /**< L2 term (SGD, Adam) or decoupled decay (AdamW); 0 for none */
    double beta1;        /**< Adam(W), in [0, 1); left 0, 0.9 (see 'set') */
    double beta2;        /**< Adam(W), in [0, 1); left 0, 0.999 (see 'set') */
    double eps;          /**< Adam(W), finite and >= 0; left 0, 1e-8 (see 'set') */
    unsigned set;        /**< TG_OPTIM_SET_* bits: those fields are taken as written, 0 included */
} tg_optim_opts;

/** An optimizer: its options, the parameters it updates and their state. */
typedef struct tg_optim tg_optim;

/** An optimizer over every parameter of 'ps' present now; NULL on bad options
 * (lr < 0 or not finite, negative or NaN momentum or weight decay, Nesterov
 * without momentum or with dampening, a beta outside [0, 1), eps < 0 or not
 * finite, an unknown kind or 'set' bit) or a NULL argument (TG_ERR_ARG), or
 * no memory (TG_ERR_NOMEM), with the reason in tg_last_error. 'ps' must
 * outlive the optimizer. Its state buffers are created here; a step allocates
 * nothing. Updates run in each parameter's dtype (float math for F32). */
TG_API tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts);
/** Frees the optimizer and its state (not the parameters); NULL is fine. */
TG_API void tg_optim_free(tg_optim *o);
/** One update of every parameter that has a gradient; the others, and their
 * state, are left alone. "optim.step" counts calls, and is the t of Adam's bias
 * correction and the first-step test of SGD momentum for every parameter (one
 * counter, where PyTorch keeps one per parameter; the two agree whenever every
 * parameter has a gradient at every step). TG_ERR_ARG for NULL. TG_ERR_STATE,
 * updating nothing, when parameters were added to the registry after
 * tg_optim_new: the optimizer has no state for them and would silently leave
 * them untrained, so it refuses; make a new optimizer (or register every
 * parameter first). */
TG_API tg_status tg_optim_step(tg_optim *o);
/** Sets the learning rate of the next steps, in every parameter group: any
 * finite lr >= 0, 0 included (a warm-up from 0). TG_ERR_ARG, and the rates
 * unchanged, for a NULL optimizer or a negative, infinite or NaN rate. */
TG_API tg_status tg_optim_set_lr(tg_optim *o, double lr);
/** The optimizer's state (moments, step count) as a registry it owns, so a
 * checkpoint can save and restore it; names start with "optim.". They are
 * "optim.step" (rank 0, F64) and, per parameter `<name>`, shaped like it:
 * `optim.sgd.momentum.<name>` (SGD with momentum > 0), `optim.adam.m.<name>`
 * and `optim.adam.v.<name>` ("optim.adamw..." for AdamW); with parameter
 * groups (tg_optim_new_groups), `optim.group.<group>.lr` per group too. */
TG_API tg_params *tg_optim_state(tg_optim *o);

#define TG_GROUP_SET_LR           1u /**< tg_param_group.set: the group's own lr */
#define TG_GROUP_SET_WEIGHT_DECAY 2u /**< tg_param_group.set: the group's own weight decay */

/** A parameter group (an entry of PyTorch's param_groups): the parameters it
 * takes and the options it overrides. A parameter named in some group's
 * 'params' belongs to that group; any other goes to the first group with a
 * 'match' pattern that fits its name, and the parameters no group takes form
 * a last group called "default" with the optimizer's options. */
typedef struct tg_param_group {
    const char *name;          /**< unique, not "default": its state is "optim.group.<name>.lr" */
    const char *const *match;  /**< NULL-terminated fnmatch(3) patterns ("*.bias"), or NULL */
    const char *const *params; /**< NULL-terminated parameter names, or NULL */
    double lr;                 /**< the group's learning rate, with TG_GROUP_SET_LR */
    double weight_decay;       /**< the group's weight decay, with TG_GROUP_SET_WEIGHT_DECAY */
    unsigned set;              /**< TG_GROUP_SET_* bits; fields without one take the optimizer's */
} tg_param_group;

/** An optimizer over every parameter of 'ps' present now, in n_groups groups
 * plus "default" (group n_groups, possibly empty), each with its own learning
 * rate and weight decay: torch.optim.Adam([{"params": ..., "weight_decay": 0},
 * ...], lr=..., weight_decay=...). The typical use is no decay for biases and
 * normalisation parameters: `{.name = "no_decay", .match = (const char *[]){
 * "*.bias", "bn.*", NULL}, .set = TG_GROUP_SET_WEIGHT_DECAY}`. Each group's
 * current rate is part of the state, "optim.group.<name>.lr" (rank 0, F64),
 * so a checkpoint keeps a rate a schedule lowered. NULL with TG_ERR_ARG in
 * tg_last_error for the reasons of tg_optim_new, a group option that is bad
 * in the same way, a group without a name, two groups of one name, a name in
 * 'params' that the registry lacks or that two groups list, an unknown 'set'
 * bit, or n_groups < 0; TG_ERR_NOMEM. tg_optim_new(ps, opts) is this with
 * no group: one group, whose rate is not in the state. */
TG_API tg_optim *tg_optim_new_groups(tg_params *ps, const tg_optim_opts *opts,
                                     const tg_param_group *groups, int n_groups);
/** The number of parameter groups (the "default" group included); 0 for NULL. */
TG_API int tg_optim_group_count(const tg_optim *o);
/** Group g's name ("default" for the last), NULL when g is out of range. */
TG_API const char *tg_optim_group_name(const tg_optim *o, int g);
/** The group a parameter of the registry belongs to, -1 (TG_ERR_ARG) if it
 * has none (not in the registry, or added after the optimizer). */
TG_API int tg_optim_group_of(const tg_optim *o, const char *param_name);
/** Group g's current learning rate; NaN (TG_ERR_ARG) when g is out of range. */
TG_API double tg_optim_group_lr(const tg_optim *o, int g);
/** Group g's base rate, the one it was made with (PyTorch's initial_lr), which
 * schedules scale; NaN (TG_ERR_ARG) when g is out of range. */
TG_API double tg_optim_group_base_lr(const tg_optim *o, int g);
/** Sets group g's learning rate; TG_ERR_ARG for a bad group or rate (as tg_optim_set_lr). */
TG_API tg_status tg_optim_set_group_lr(tg_optim *o, int g, double lr);

/* ====== nn: gradient clipping ====== */

/** torch.nn.utils.clip_grad_norm_: the norm of order 'norm_type' (INFINITY for
 * the largest magnitude) of all the gradients of 'ps' taken together, as if
 * they were one vector, then every gradient times min(1, max_norm / (norm +
 * 1e-6)). Returns the norm before clipping. As in PyTorch, a non-finite norm
 * still scales: inf gives the factor 0 (so an inf element becomes NaN), NaN
 * makes every gradient NaN; check the result with isfinite to skip such a
 * step. Parameters without a gradient are left out; none at all returns 0.
 * -1 with TG_ERR_ARG in tg_last_error, touching nothing, for a NULL registry,
 * max_norm negative or NaN, or norm_type not > 0. F32 gradients are summed in
 * double. */
TG_API double tg_clip_grad_norm(tg_params *ps, double max_norm, double norm_type);
/** torch.nn.utils.clip_grad_value_: clamps every gradient element of 'ps' to
 * [-clip, clip] (NaN stays NaN). TG_ERR_ARG for NULL or clip negative or NaN. */
TG_API tg_status tg_clip_grad_value(tg_params *ps, double clip);

/* ====== nn: learning-rate schedules ======
 * A schedule sets each parameter group's rate from its base rate
 * (tg_optim_group_base_lr) as torch.optim.lr_scheduler does; "step" t counts
 * the scheduler steps taken, so the rate at t is the one PyTorch's optimizer
 * holds after t calls of scheduler.step(). Every kind but the plateau one is
 * a pure function of t (tg_sched_lr), so a resumed run needs only its step
 * count. */

/** The rule of a tg_sched, with its PyTorch equivalent. */
typedef enum tg_sched_kind {
    TG_SCHED_CONSTANT,    /**< the base rate (LambdaLR(lambda t: 1)) */
    TG_SCHED_STEP,        /**< base gamma^(t / step_size) (StepLR) */
    TG_SCHED_EXPONENTIAL, /**< base gamma^t (ExponentialLR) */
    /** min_lr + (base - min_lr) (1 + cos(pi t / T)) / 2 with T = total_steps -
     * warmup_steps (CosineAnnealingLR(T_max=T, eta_min=min_lr)); past T it
     * turns back up, as PyTorch's does */
    TG_SCHED_COSINE,
    /** up from base / div_factor to base over pct_start of total_steps, then
     * down to base / div_factor / final_div_factor, along a cosine (or a line)
     * (OneCycleLR(max_lr=base, cycle_momentum=False, three_phase=False));
     * step total_steps, after the last planned one, keeps the final rate
     * (PyTorch extrapolates, below 0 when linear); later steps are refused */
    TG_SCHED_ONE_CYCLE,
    /** times 'factor' (not below min_lr) after more than 'patience' steps
     * without improvement of the metric given to tg_sched_step
     * (ReduceLROnPlateau) */
    TG_SCHED_PLATEAU,
} tg_sched_kind;

#define TG_SCHED_SET_PATIENCE  1u /**< tg_sched_opts.set: take patience as written, 0 included */
#define TG_SCHED_SET_THRESHOLD 2u /**< tg_sched_opts.set: take threshold as written, 0 included */
#define TG_SCHED_SET_EPS       4u /**< tg_sched_opts.set: take eps as written, 0 included */
#define TG_SCHED_SET_PCT_START 8u /**< tg_sched_opts.set: take pct_start as written, 0 included */

/** A schedule's options; a field left 0 is PyTorch's default, which is 0
 * itself except where noted (as for tg_optim_opts, a 'set' bit asks for 0
 * where 0 is a valid value with another default). */
typedef struct tg_sched_opts {
    tg_sched_kind kind; /**< the rule */
    /** CONSTANT, STEP, EXPONENTIAL, COSINE: this many steps of linear warm-up
     * from warmup_start times the base first; the rule then starts from its
     * own step 0 (SequentialLR([LinearLR(start_factor=warmup_start,
     * total_iters=warmup_steps), rule], milestones=[warmup_steps])) */
    int64_t warmup_steps;
    double warmup_start;     /**< in (0, 1]; left 0, 1/3 (LinearLR's start_factor) */
    int64_t step_size;       /**< STEP: >= 1 */
    double gamma;            /**< STEP, EXPONENTIAL: > 0; left 0, 0.1 */
    int64_t total_steps;     /**< COSINE: warm-up + T, T >= 1; ONE_CYCLE: >= 1 */
    double min_lr;           /**< COSINE's eta_min; PLATEAU's floor; >= 0 */
    double pct_start;        /**< ONE_CYCLE: in [0, 1]; left 0, 0.3 (see 'set') */
    double div_factor;       /**< ONE_CYCLE: > 0; left 0, 25 */
    double final_div_factor; /**< ONE_CYCLE: > 0; left 0, 1e4 */
    bool anneal_linear;      /**< ONE_CYCLE: anneal_strategy "linear" instead of "cos" */
    bool maximize;           /**< PLATEAU: mode "max" (an accuracy), else "min" (a loss) */
    bool threshold_abs;      /**< PLATEAU: threshold_mode "abs", else "rel" */
    double factor;           /**< PLATEAU: in (0, 1); left 0, 0.1 */
    int64_t patience;        /**< PLATEAU: >= 0; left 0, 10 (see 'set') */
    double threshold;        /**< PLATEAU: >= 0; left 0, 1e-4 (see 'set') */
    int64_t cooldown;        /**< PLATEAU: >= 0 */
    double eps;              /**< PLATEAU: least reduction; left 0, 1e-8 (see 'set') */
    unsigned set;            /**< TG_SCHED_SET_* bits */
} tg_sched_opts;

/** A schedule: its options (defaults filled in) and its state, plain fields
 * that a checkpoint can store. */
typedef struct tg_sched {
    tg_sched_opts o;       /**< as given, with the defaults filled in */
    int64_t step;          /**< tg_sched_step calls so far (PyTorch's last_epoch) */
    double best;           /**< PLATEAU: the best metric so far (+-inf at first) */
    int64_t bad_steps;     /**< PLATEAU: steps since the best (num_bad_epochs) */
    int64_t cooldown_left; /**< PLATEAU: steps before bad ones count again */
} tg_sched;

/** Checks the options, fills the defaults, sets step 0 and, if 'opt' is not
 * NULL, every group's rate to the rate at step 0 (as creating a PyTorch
 * scheduler does; PLATEAU leaves the rates). TG_ERR_ARG (tg_last_error names
 * the field) for an option outside its range, an unknown kind or 'set' bit,
 * a one-cycle whose first phase would last exactly one step (PyTorch divides
 * 0 by 0 there), or NULL s or opts. */
TG_API tg_status tg_sched_init(tg_sched *s, const tg_sched_opts *opts, tg_optim *opt);
/** The rate at step t of a group with base rate 'base'; NaN (TG_ERR_ARG) for
 * t < 0, ONE_CYCLE past total_steps, PLATEAU (whose rate is no function of
 * t), or NULL. */
TG_API double tg_sched_lr(const tg_sched *s, double base, int64_t t);
/** One scheduler.step(): for PLATEAU, 'metric' decides, and each group's rate
 * becomes max(rate factor, min_lr) when lowered by more than eps; for the
 * others it is ignored and every group gets the rate of the next step.
 * Call it after tg_optim_step (per batch or per epoch, as the schedule was
 * planned). TG_ERR_ARG for NULL or, with the rates unchanged, a step that
 * tg_sched_lr refuses. */
TG_API tg_status tg_sched_step(tg_sched *s, tg_optim *opt, double metric);
/** Sets s->step to t and every group's rate to the rate at t (not PLATEAU):
 * how a resumed run, or one that counts steps itself, catches up. TG_ERR_ARG
 * as tg_sched_step. */
TG_API tg_status tg_sched_apply(tg_sched *s, tg_optim *opt, int64_t t);

/* ====== nn: evaluation (no-grad tapes, train and eval modes) ======
 * PyTorch evaluates under torch.no_grad() and model.eval(). Here the two are
 * a tape recorded without gradients and layers recorded with training =
 * false, on a tape of their own: a recorded tape keeps the mode it was
 * recorded in, so a training loop records one tape per mode, both reading the
 * same parameters (and batch norm's running statistics), and replays the one
 * it needs. */

/* tg_tape_set_grad (tapegrad.h, beside tg_tape_set_anomaly) records a tape
 * without gradients. */

/* ====== nn: metrics on tensors ======
 * Scores are F32 or F64 [N, C] (logits or probabilities); labels are I64 [N]
 * class indices or a float [N, C] one-hot (the first maximum of a row is its
 * class). 'rows' counts the first rows only (-1 for all N), for a padded last
 * batch. A prediction is the first maximum of a row (torch.argmax; NaN counts
 * as the largest). Failures are TG_ERR_ARG (bad shapes, dtypes, k or rows, a
 * label outside [0, C)) with the reason in tg_last_error. */

/** The number of the rows whose label is among the k largest scores
 * (torch.topk(scores, k).indices == label, any), ties broken towards the lower
 * class as argmax does; -1 on failure. k = 1 counts argmax hits. */
TG_API int64_t tg_topk_correct(const tg_tensor *scores, const tg_tensor *labels, int k,
                               int64_t rows);
/** tg_topk_correct(scores, labels, 1, -1) / N: (scores.argmax(1) ==
 * labels).float().mean(); -1 on failure, NaN for N = 0. */
TG_API double tg_accuracy(const tg_tensor *scores, const tg_tensor *labels);
/** Adds the first 'rows' rows to an I64 [C, C] confusion matrix: cm[label,
 * prediction] += 1 (rows are the true classes, as sklearn's and torchmetrics'
 * confusion_matrix). cm is a leaf the caller zeroes (tg_tensor_new does). */
TG_API tg_status tg_confusion_add(tg_tensor *cm, const tg_tensor *scores, const tg_tensor *labels,
                                  int64_t rows);
/** Per-class figures from a confusion matrix, each array C long (any may be
 * NULL): precision = cm[c,c] / column sum, recall = cm[c,c] / row sum, f1 =
 * 2 p r / (p + r), 0 where the denominator is 0 (sklearn's zero_division=0),
 * support = row sum. TG_ERR_ARG for a cm that is not I64 [C, C]. */
TG_API tg_status tg_class_report(const tg_tensor *cm, double *precision, double *recall, double *f1,
                                 int64_t *support);

/* ====== nn: data ====== */

/** Reads an IDX file (the MNIST family format), gzipped or plain, into a new
 * tensor of dtype 'dt' with the file's shape (rank 1..4), each value
 * multiplied by 'scale' (TG_I64, for labels, takes the products only when
 * they are whole numbers). *out is set only on success. TG_ERR_IO when the file
 * cannot be opened or read; TG_ERR_FORMAT for a bad magic, type code or rank,
 * dimensions that overflow, or data shorter or longer than the dimensions
 * say, with the path and byte offset (in the uncompressed stream) in err. */
TG_API tg_status tg_idx_load(const char *path, tg_dtype dt, double scale, tg_tensor **out,
                             tg_error *err);
/** Writes a rank 1..4 tensor as IDX with the given element type code (0x08
 * ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double); plain
 * unless 'path' ends in ".gz". Integer types must hold every value exactly
 * (else TG_ERR_ARG and no file is touched); 0x0D rounds to float. A write
 * that fails (TG_ERR_IO) removes the half-written file. */
TG_API tg_status tg_idx_save(const char *path, const tg_tensor *t, int type_code, tg_error *err);

/** Options of tg_csv_load. */
typedef struct tg_csv_opts {
    /** 0 means ','; NUL ends a C string, so it can never be a delimiter and
     * the default costs no value that could be asked for */
    char delimiter;
    /** 1: first line is a header, 0: no header, -1: detect: the first line is
     * the header only when none of its cells reads as a number */
    int header;
    /** column moved into *y, -1 for none; negative values below -1 count from the end */
    int label_col;
    tg_dtype dtype; /**< of x and y */
} tg_csv_opts;

/** Reads numeric CSV into x [rows, cols] (without the label column) and, if
 * label_col >= 0, y [rows]. Outputs set only on success.
 * opts NULL means ',', header detected, no label column, TG_F32. Blank lines
 * are skipped; "\r\n", a missing final newline and a UTF-8 byte order mark
 * at the start are fine. A detected header is a first line where no cell is
 * a number; a first line with numbers and one empty or malformed cell is an
 * error, like any other row. Numbers are decimal, as strtod reads them in
 * the C locale, with spaces around them allowed; "inf", "infinity" and "nan"
 * (any case, with a sign) are read as such, as numpy.savetxt writes them.
 * Refused, with TG_ERR_FORMAT: hexadecimal numbers ("0x10", which strtod
 * would take), numbers that overflow the dtype ("1e999"; "1e39" in F32)
 * rather than becoming inf; a value that underflows becomes 0 or a denormal.
 * With a label column (label_col other than -1) *y gets its values (y may be
 * NULL to drop them); without one *y is set to NULL. TG_ERR_FORMAT names the
 * path, line and column (an empty cell, a cell that is not a number, a row
 * with another column count, no data rows); TG_ERR_ARG for a label column
 * outside the file's columns. */
TG_API tg_status tg_csv_load(const char *path, const tg_csv_opts *opts, tg_tensor **x,
                             tg_tensor **y, tg_error *err);

/** Integer class labels [n] -> one-hot [n, n_classes]; NULL (TG_ERR_ARG in
 * tg_last_error, naming the label) if a label is out of range or not whole,
 * TG_ERR_NOMEM. Labels: a rank-1 tensor of whole numbers in [0, n_classes).
 * The caller frees the result. */
TG_API tg_tensor *tg_one_hot(const tg_tensor *labels, int64_t n_classes, tg_dtype dt);

/** Splits rows (axis 0) after a seeded shuffle: the last round(holdout * n)
 * rows go to *x_held / *y_held. y may be NULL (then y outputs are too).
 * Rows of x and y stay paired; the four outputs are new tensors the caller
 * frees, set only on success. TG_ERR_ARG for holdout outside [0, 1], rank-0
 * inputs or y with another row count; TG_ERR_NOMEM (the reason in
 * tg_last_error). */
TG_API tg_status tg_split(const tg_tensor *x, const tg_tensor *y, double holdout, uint64_t seed,
                          tg_tensor **x_train, tg_tensor **y_train, tg_tensor **x_held,
                          tg_tensor **y_held);

/** An iterator over mini-batches of rows of x and y. */
typedef struct tg_batcher tg_batcher;

/** Iterates over rows of x (and y, which may be NULL) in batches; reshuffles
 * every epoch from 'seed' when 'shuffle'.
 * x and y are read at every tg_batcher_next, so they must outlive the batcher.
 * NULL for batch < 1, rank-0 tensors or y with another row count (TG_ERR_ARG),
 * or no memory. */
TG_API tg_batcher *tg_batcher_new(const tg_tensor *x, const tg_tensor *y, int64_t batch,
                                  bool shuffle, uint64_t seed);
/** Frees the batcher (not x or y); NULL is fine. */
TG_API void tg_batcher_free(tg_batcher *b);
/** Copies the next batch's rows into xb / yb (leaves with 'batch' rows and the
 * same row shape; yb may be NULL) and returns the number of rows copied, less
 * than 'batch' for a last partial batch, 0 at the end of the epoch (the next
 * call starts a new, reshuffled epoch). -1 for mismatched shapes.
 * Also -1 for another dtype, or yb when the batcher has no y. The rows a
 * partial batch leaves over are zeroed; a loss that averages over all 'batch'
 * rows would still divide by 'batch', so use tg_batcher_weights for the exact
 * mean over the rows copied. */
TG_API int64_t tg_batcher_next(tg_batcher *b, tg_tensor *xb, tg_tensor *yb);
/** Writes the row weights of the batch tg_batcher_next last returned into w,
 * a float leaf of 'batch' elements (such as [batch, 1], which broadcasts over
 * a row): batch / rows for each of its rows and 0 for the rows a partial
 * batch leaves over, so all 1 for a full batch (and all 0 before the first
 * batch and at an epoch's end). A loss averaged over the 'batch' rows with
 * each row's terms multiplied by its weight is the exact mean over the real
 * rows, in value and gradient, and one recorded tape serves full and short
 * batches: softmax cross-entropy is linear in its target, so
 * tg_softmax_cross_entropy(tp, logits, tg_mul(tp, y, w)); a squared error
 * tg_mean(tp, tg_mul(tp, tg_square(tp, tg_sub(tp, pred, y)), w)).
 * Call it after each tg_batcher_next, before the replay. TG_ERR_ARG for NULL
 * or another w. */
TG_API tg_status tg_batcher_weights(const tg_batcher *b, tg_tensor *w);
/** Batches per epoch, the last partial one included. */
TG_API int64_t tg_batcher_batches(const tg_batcher *b);

/* ====== nn: checkpoints (safetensors) ====== */

/** Writes every parameter of the n_sets registries (names must be unique) to
 * 'path' in the safetensors format: a temporary file in the same folder,
 * fsync, rename. On failure the old file at 'path' is untouched.
 * TG_ERR_ARG for a NULL set, a repeated, empty or non-UTF-8 name, or the
 * reserved "__metadata__"; TG_ERR_IO, naming the step that failed and why.
 * The file keeps the old one's permissions, or gets 0644. */
TG_API tg_status tg_checkpoint_save(const char *path, tg_params *const *sets, int n_sets,
                                    tg_error *err);
/** Reads 'path' and validates every tensor the registries expect (present,
 * same dtype and shape, data in bounds) before copying any; on failure no
 * parameter changes. Tensors in the file that no registry has are ignored.
 * TG_ERR_FORMAT (path and tensor in err) for a header length past the end,
 * JSON that does not parse, a missing tensor, another dtype or shape, or
 * data_offsets out of bounds, reversed, of the wrong size or overlapping
 * (checked for every tensor in the file); TG_ERR_IO when unreadable. */
TG_API tg_status tg_checkpoint_load(const char *path, tg_params *const *sets, int n_sets,
                                    tg_error *err);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_NN_H */
