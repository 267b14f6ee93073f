#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const int32_t *rows;
    const int32_t *cols;
    const float *log_x;
    const float *weight;
    int64_t n;
    float *word;       /* V x stride: [w_i, b_i, 1] */
    float *context;    /* V x stride: [w~_j, 1, b~_j] */
    float *gsq_word;   /* AdaGrad accumulators, same layout */
    float *gsq_context;
    int32_t dim;
    int32_t stride;
    float lr;
    float bias_lr;
    float clip;
    int32_t n_threads;
    double *cost;            /* per thread */
    volatile int64_t *progress; /* [0] entries done (approximate), [1] stop flag */
} GloveParams;

typedef struct { const GloveParams *p; int64_t start, end; int id; } Job;

static inline float clipf(float x, float c) { return x > c ? c : (x < -c ? -c : x); }

static void *glove_thread(void *arg) {
    Job *job = (Job *)arg;
    const GloveParams *p = job->p;
    const int dim = p->dim, stride = p->stride;
    const float lr = p->lr, bias_lr = p->bias_lr, clip = p->clip;
    float *u1 = (float *)malloc(sizeof(float) * dim);
    float *u2 = (float *)malloc(sizeof(float) * dim);
    double cost = 0;
    int64_t since = 0;
    for (int64_t a = job->start; a < job->end; a++) {
        float *w = p->word + (int64_t)p->rows[a] * stride;
        float *c = p->context + (int64_t)p->cols[a] * stride;
        float *gw = p->gsq_word + (int64_t)p->rows[a] * stride;
        float *gc = p->gsq_context + (int64_t)p->cols[a] * stride;
        float diff = 0;
        for (int b = 0; b < dim; b++) diff += w[b] * c[b];
        diff += w[dim] + c[dim + 1] - p->log_x[a];
        float fdiff = p->weight[a] * diff;
        if (!isfinite(diff) || !isfinite(fdiff)) continue;
        cost += 0.5 * (double)fdiff * (double)diff;
        float s1 = 0, s2 = 0;
        for (int b = 0; b < dim; b++) {
            float t1 = clipf(fdiff * c[b], clip) * lr;
            float t2 = clipf(fdiff * w[b], clip) * lr;
            u1[b] = t1 / sqrtf(gw[b]);
            u2[b] = t2 / sqrtf(gc[b]);
            s1 += u1[b];
            s2 += u2[b];
            gw[b] += t1 * t1;
            gc[b] += t2 * t2;
        }
        if (isfinite(s1) && isfinite(s2)) {
            for (int b = 0; b < dim; b++) { w[b] -= u1[b]; c[b] -= u2[b]; }
        }
        float t = fdiff * bias_lr;
        float ub = t / sqrtf(gw[dim]), uc = t / sqrtf(gc[dim + 1]);
        if (isfinite(ub)) w[dim] -= ub;
        if (isfinite(uc)) c[dim + 1] -= uc;
        gw[dim] += t * t;
        gc[dim + 1] += t * t;
        if (++since == 65536) {
            __atomic_fetch_add((int64_t *)&p->progress[0], since, __ATOMIC_RELAXED);
            since = 0;
            if (p->progress[1]) break;
        }
    }
    __atomic_fetch_add((int64_t *)&p->progress[0], since, __ATOMIC_RELAXED);
    p->cost[job->id] = cost;
    free(u1);
    free(u2);
    return NULL;
}

/* One pass over the (already shuffled) entries; threads take equal contiguous sections. */
int glove_epoch(const GloveParams *p) {
    int t, n = p->n_threads < 1 ? 1 : p->n_threads;
    pthread_t *threads = (pthread_t *)malloc(sizeof(pthread_t) * n);
    Job *jobs = (Job *)malloc(sizeof(Job) * n);
    for (t = 0; t < n; t++) {
        jobs[t].p = p;
        jobs[t].id = t;
        jobs[t].start = p->n / n * t;
        jobs[t].end = t == n - 1 ? p->n : p->n / n * (t + 1);
    }
    /* A section whose thread cannot be started runs in the calling thread afterwards (never a join
       of a thread that does not exist). */
    char *started = (char *)calloc(n, 1);
    for (t = 1; t < n; t++) started[t] = pthread_create(&threads[t], NULL, glove_thread, &jobs[t]) == 0;
    glove_thread(&jobs[0]);
    for (t = 1; t < n; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else glove_thread(&jobs[t]);
    }
    free(started);
    free(threads);
    free(jobs);
    return 0;
}
