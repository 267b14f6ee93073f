#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXP_TABLE_SIZE 1000
#define MAX_EXP 6
#define MAX_SENTENCE 10000

typedef struct {
    const int32_t *corpus;        /* token ids, all lines concatenated */
    const int64_t *line_ends;     /* end offset of each line in corpus */
    int64_t n_lines;
    const uint32_t *keep;         /* subsampling threshold per word (scaled to 2^32); NULL: keep all */
    float *syn0, *syn1, *syn1neg; /* input vectors, HS inner-node vectors, NS output vectors */
    int32_t dim, window, negative, hs, sg, cbow_mean;
    const float *alias_prob;      /* alias table for negatives (Vose) */
    const int32_t *alias_other;
    int32_t vocab_size;
    const int32_t *points;        /* HS: inner nodes on each word's path, root first (flattened) */
    const uint8_t *codes;         /* HS: branch bits along the path */
    const int64_t *code_offsets;  /* start of each word's path in points/codes */
    const int32_t *code_lens;
    float alpha, min_alpha;
    int32_t epochs;
    int64_t total_words;          /* corpus words per epoch, for the learning-rate schedule */
    int64_t *progress;            /* [0]: words done over all threads; [1]: stop flag; [2]: set (with [1])
                                     when a dot product is NaN: the vectors diverged */
    uint64_t seed;
    int32_t n_threads;
    double *loss;                 /* [epoch * n_threads + thread]: sum of -log sigmoid(+-f) over predictions;
                                     NULL: not measured */
    int64_t *loss_count;          /* [epoch * n_threads + thread]: predictions in that sum */
} Params;

typedef struct {
    const Params *p; int thread; int64_t line_begin, line_end; float *exp_table; float *loss_table;
} Job;

/* The loss of one binary prediction, -log sigmoid(f) for label 1 and -log sigmoid(-f) for label 0
   (gensim's compute_loss), from a table over the same grid as the sigmoid; past +-MAX_EXP it is
   taken as 0 on the right side and |f| on the wrong side (-log sigmoid(-x) -> x). */
static inline float logistic_loss(const float *loss_table, float f, float label) {
    const float x = label > 0.5f ? f : -f;
    if (x >= MAX_EXP) return 0.f;
    if (x <= -MAX_EXP) return -x;
    int i = (int)((x + MAX_EXP) * (EXP_TABLE_SIZE / MAX_EXP / 2));
    if (i < 0) i = 0;
    if (i > EXP_TABLE_SIZE) i = EXP_TABLE_SIZE;
    return loss_table[i];
}

static inline uint64_t lcg(uint64_t *state) {
    uint64_t out = *state >> 16;
    *state = (*state * 25214903917ULL + 11ULL) & 281474976710655ULL;
    return out & 0xFFFFFFFFULL;
}

static inline int32_t draw_alias(const float *prob, const int32_t *other, int32_t n, uint64_t *state) {
    /* One 32-bit draw gives both the bucket (high part of r * V) and the uniform for the coin
       flip (the fraction left over), as in the usual one-random-number alias sampler. */
    uint64_t scaled = lcg(state) * (uint64_t)n;
    int32_t bucket = (int32_t)(scaled >> 32);
    float u = (float)(scaled & 0xFFFFFFFFULL) * (1.0f / 4294967296.0f);
    return u < prob[bucket] ? bucket : other[bucket];
}

static inline int keep_word(const uint32_t *keep, int32_t w, uint64_t *state) {
    return !keep || keep[w] >= lcg(state);
}

/* sigmoid(f) from the table for f in (-MAX_EXP, MAX_EXP); the index is clamped as well, so no value
   of f (callers test the range first, and NaN fails every test) can read outside the table. */
static inline float table_sigmoid(const float *exp_table, float f) {
    int i = (int)((f + MAX_EXP) * (EXP_TABLE_SIZE / MAX_EXP / 2));
    if (i < 0) i = 0;
    if (i > EXP_TABLE_SIZE) i = EXP_TABLE_SIZE;
    return exp_table[i];
}

/* A NaN dot product means the vectors overflowed: stop every thread and report it. (An infinite one
   takes the saturated branch; the NaNs it leads to are caught here, and the driver checks the
   vectors after training too.) */
static inline void diverged(const Params *p) {
    __atomic_store_n(&p->progress[2], 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->progress[1], 1, __ATOMIC_RELAXED);
}

static inline float dotf(const float *restrict a, const float *restrict b, int n) {
    float s = 0.f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float g, const float *restrict x, float *restrict y, int n) {
    for (int i = 0; i < n; i++) y[i] += g * x[i];
}

/* work += g * v; v += g * h, in one pass over v. */
static inline void update_pair(float g, float *restrict v, float *restrict work, const float *restrict h, int n) {
    for (int i = 0; i < n; i++) {
        const float vi = v[i];
        work[i] += g * vi;
        v[i] = vi + g * h[i];
    }
}

/* One prediction: hidden vector h (a context word's row for skip-gram, the averaged context
   for CBOW), target word w. Adds alpha * dL/dh into work; updates output rows in place. */
static inline void train_target(const Params *p, const float *exp_table, const float *loss_table,
                                const float *restrict h, float *restrict work, int32_t w, float alpha,
                                uint64_t *state, double *loss, int64_t *count) {
    const int n = p->dim;
    /* the loss is summed in registers and added once per call: a memory update per pair cost a
       third of the loop's speed */
    float acc = 0.f;
    int counted = 0;
    if (p->hs) {
        const int64_t off = p->code_offsets[w];
        for (int b = 0; b < p->code_lens[w]; b++) {
            float *restrict v = p->syn1 + (int64_t)p->points[off + b] * n;
            float f = dotf(h, v, n);
            if (loss) { acc += logistic_loss(loss_table, f, 1.f - (float)p->codes[off + b]); counted++; }
            if (!(f > -MAX_EXP && f < MAX_EXP)) {  /* outside the table (NaN included): skipped */
                if (f != f) { diverged(p); return; }
                continue;
            }
            f = table_sigmoid(exp_table, f);
            float g = (1.f - (float)p->codes[off + b] - f) * alpha;
            update_pair(g, v, work, h, n);
        }
    }
    if (p->negative > 0) {
        for (int d = 0; d <= p->negative; d++) {
            int32_t target;
            float label;
            if (d == 0) { target = w; label = 1.f; }
            else {
                target = draw_alias(p->alias_prob, p->alias_other, p->vocab_size, state);
                if (target == w) continue;
                label = 0.f;
            }
            float *restrict v = p->syn1neg + (int64_t)target * n;
            float f = dotf(h, v, n);
            if (loss) { acc += logistic_loss(loss_table, f, label); counted++; }
            float g;
            if (f > -MAX_EXP && f < MAX_EXP) g = (label - table_sigmoid(exp_table, f)) * alpha;
            else if (f >= MAX_EXP) g = (label - 1.f) * alpha;
            else if (f <= -MAX_EXP) g = label * alpha;
            else { diverged(p); return; }  /* NaN: the vectors overflowed */
            update_pair(g, v, work, h, n);
        }
    }
    if (loss) { *loss += acc; *count += counted; }
}

static void *run_thread(void *arg) {
    Job *job = (Job *)arg;
    const Params *p = job->p;
    const int n = p->dim;
    const float *exp_table = job->exp_table;
    const float *loss_table = job->loss_table;
    const int nt = p->n_threads < 1 ? 1 : p->n_threads;
    double epoch_loss = 0.0;
    int64_t epoch_count = 0;
    double *loss = p->loss ? &epoch_loss : NULL;
    int epoch = 0;
    uint64_t state = (p->seed * 6364136223846793005ULL + 1442695040888963407ULL * (uint64_t)(job->thread + 1))
                     & 281474976710655ULL;
    int32_t *sentence = (int32_t *)malloc(sizeof(int32_t) * MAX_SENTENCE);
    float *work = (float *)malloc(sizeof(float) * n);
    float *neu1 = (float *)malloc(sizeof(float) * n);
    const double total = (double)p->epochs * (double)p->total_words + 1.0;
    float alpha = p->alpha;
    int64_t pending = 0;
    for (epoch = 0; epoch < p->epochs; epoch++) {
        for (int64_t line = job->line_begin; line < job->line_end; line++) {
            if (__atomic_load_n(&p->progress[1], __ATOMIC_RELAXED)) goto done;
            const int64_t begin = line == 0 ? 0 : p->line_ends[line - 1];
            const int64_t end = p->line_ends[line];
            for (int64_t piece = begin; piece < end; piece += MAX_SENTENCE) {
                const int64_t piece_end = piece + MAX_SENTENCE < end ? piece + MAX_SENTENCE : end;
                int len = 0;
                for (int64_t t = piece; t < piece_end; t++) {
                    int32_t w = p->corpus[t];
                    if (!keep_word(p->keep, w, &state)) continue;
                    sentence[len++] = w;
                }
                pending += piece_end - piece;
                if (pending >= 10000) {
                    int64_t done = __atomic_add_fetch(&p->progress[0], pending, __ATOMIC_RELAXED);
                    pending = 0;
                    double progress = (double)done / total;
                    alpha = p->alpha - (p->alpha - p->min_alpha) * (float)(progress < 1.0 ? progress : 1.0);
                    if (alpha < p->min_alpha) alpha = p->min_alpha;
                }
                for (int i = 0; i < len; i++) {
                    const int64_t reduced = (int64_t)((lcg(&state) * (uint64_t)p->window) >> 32);
                    const int64_t span = (int64_t)p->window - reduced;
                    const int lo = (int64_t)i - span < 0 ? 0 : (int)(i - span);
                    const int hi = (int64_t)i + span + 1 > len ? len : (int)(i + span + 1);
                    if (p->sg) {
                        for (int j = lo; j < hi; j++) {
                            if (j == i) continue;
                            float *restrict h = p->syn0 + (int64_t)sentence[j] * n;
                            memset(work, 0, sizeof(float) * n);
                            train_target(p, exp_table, loss_table, h, work, sentence[i], alpha, &state,
                                         loss, &epoch_count);
                            axpy(1.f, work, h, n);
                        }
                    } else {
                        int count = 0;
                        memset(neu1, 0, sizeof(float) * n);
                        for (int j = lo; j < hi; j++) {
                            if (j == i) continue;
                            axpy(1.f, p->syn0 + (int64_t)sentence[j] * n, neu1, n);
                            count++;
                        }
                        if (!count) continue;
                        const float inv = 1.f / (float)count;
                        if (p->cbow_mean) for (int d = 0; d < n; d++) neu1[d] *= inv;
                        memset(work, 0, sizeof(float) * n);
                        train_target(p, exp_table, loss_table, neu1, work, sentence[i], alpha, &state,
                                     loss, &epoch_count);
                        if (!p->cbow_mean) for (int d = 0; d < n; d++) work[d] *= inv;
                        for (int j = lo; j < hi; j++) {
                            if (j == i) continue;
                            axpy(1.f, work, p->syn0 + (int64_t)sentence[j] * n, n);
                        }
                    }
                }
            }
        }
        if (p->loss) {  /* this thread's share of the epoch; each thread owns its slots */
            p->loss[(int64_t)epoch * nt + job->thread] = epoch_loss;
            p->loss_count[(int64_t)epoch * nt + job->thread] = epoch_count;
            epoch_loss = 0.0;
            epoch_count = 0;
        }
    }
done:
    if (p->loss && epoch < p->epochs) {  /* stopped inside an epoch: what it did of it */
        p->loss[(int64_t)epoch * nt + job->thread] = epoch_loss;
        p->loss_count[(int64_t)epoch * nt + job->thread] = epoch_count;
    }
    __atomic_add_fetch(&p->progress[0], pending, __ATOMIC_RELAXED);
    free(sentence); free(work); free(neu1);
    return NULL;
}

/* Train over the whole corpus; threads get contiguous ranges of lines of about equal size. */
int w2v_train(const Params *p) {
    float *exp_table = (float *)malloc(sizeof(float) * (EXP_TABLE_SIZE + 1));
    float *loss_table = (float *)malloc(sizeof(float) * (EXP_TABLE_SIZE + 1));
    for (int i = 0; i <= EXP_TABLE_SIZE; i++) {
        double e = exp((i / (double)EXP_TABLE_SIZE * 2 - 1) * MAX_EXP);
        exp_table[i] = (float)(e / (e + 1));
        loss_table[i] = (float)log1p(1.0 / e);  /* -log sigmoid(x) = log(1 + e^-x) */
    }
    int nt = p->n_threads < 1 ? 1 : p->n_threads;
    pthread_t *threads = (pthread_t *)malloc(sizeof(pthread_t) * nt);
    Job *jobs = (Job *)malloc(sizeof(Job) * nt);
    const int64_t total = p->n_lines ? p->line_ends[p->n_lines - 1] : 0;
    int64_t line = 0;
    for (int t = 0; t < nt; t++) {
        jobs[t].p = p; jobs[t].thread = t; jobs[t].exp_table = exp_table; jobs[t].loss_table = loss_table;
        jobs[t].line_begin = line;
        const int64_t goal = total * (t + 1) / nt;
        while (line < p->n_lines && (t == nt - 1 || p->line_ends[line] <= goal)) line++;
        jobs[t].line_end = line;
    }
    /* Threads 1.. run beside the calling thread, which takes job 0; a job whose thread cannot be
       started runs in the calling thread afterwards (never a join of a thread that does not exist). */
    char *started = (char *)calloc(nt, 1);
    for (int t = 1; t < nt; t++) started[t] = pthread_create(&threads[t], NULL, run_thread, &jobs[t]) == 0;
    run_thread(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else run_thread(&jobs[t]);
    }
    free(started);
    int rc = 0;
    free(threads); free(jobs); free(exp_table); free(loss_table);
    return rc;
}

/* Test hooks: the same draws the training loop makes, counted. */
void w2v_count_negatives(const float *prob, const int32_t *other, int32_t n, int64_t draws, uint64_t seed,
                         int64_t *counts) {
    uint64_t state = seed & 281474976710655ULL;
    for (int64_t i = 0; i < draws; i++) counts[draw_alias(prob, other, n, &state)]++;
}

void w2v_count_kept(const int32_t *corpus, int64_t n, const uint32_t *keep, uint64_t seed, int64_t *counts) {
    uint64_t state = seed & 281474976710655ULL;
    for (int64_t i = 0; i < n; i++) if (keep_word(keep, corpus[i], &state)) counts[corpus[i]]++;
}

/* Vose's alias method: O(n) construction, O(1) draws. prob must hold probabilities summing to 1. */
void w2v_build_alias(const double *weights, int32_t n, float *prob, int32_t *other) {
    double *scaled = (double *)malloc(sizeof(double) * n);
    int32_t *small = (int32_t *)malloc(sizeof(int32_t) * n);
    int32_t *large = (int32_t *)malloc(sizeof(int32_t) * n);
    int32_t ns = 0, nl = 0;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += weights[i];
    for (int32_t i = 0; i < n; i++) {
        scaled[i] = weights[i] / sum * n;
        other[i] = i;
        if (scaled[i] < 1.0) small[ns++] = i; else large[nl++] = i;
    }
    while (ns && nl) {
        int32_t s = small[--ns], l = large[--nl];
        prob[s] = (float)scaled[s];
        other[s] = l;
        scaled[l] = (scaled[l] + scaled[s]) - 1.0;
        if (scaled[l] < 1.0) small[ns++] = l; else large[nl++] = l;
    }
    while (nl) prob[large[--nl]] = 1.0f;
    while (ns) prob[small[--ns]] = 1.0f;
    free(scaled); free(small); free(large);
}
