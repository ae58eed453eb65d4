/* alloc/stats.c — statistics: the structured snapshot, its JSON form and the human dump. */
#include "alloc/internal.h"

#include <stdio.h>

OURO_INTERNAL void _ouro_arena_foreach_locked(void (*fn)(ouro_arena_t *, void *), void *arg);

/* Adds one arena's pools to the snapshot (arena lock held). */
static void stats_arena(ouro_arena_t *a, void *arg) {
    ouro_alloc_stats_t *st = arg;
    st->pools_total += OURO_POOLS_PER_ARENA - 1;
    for (size_t i = 1; i < OURO_POOLS_PER_ARENA; i++) {
        ouro_pool_t *pool = &a->pools[i];
        switch (ouro_load_relaxed(&a->pool_state[i])) {
        case OURO_PT_FREE: st->pools_free++; break;
        case OURO_PT_DEFERRED: st->pools_deferred++; break;
        case OURO_PT_BLOCKS: {
            /* cls and capacity are set under the lock at init; used is the owner's relaxed counter. */
            ouro_alloc_class_stats *c = &st->classes[pool->cls];
            size_t used = ouro_load_relaxed(&pool->used);
            c->pools++;
            c->blocks_in_use += used;
            c->blocks_free += pool->capacity - used;
            break;
        }
        default: break;
        }
    }
}

int ouro_alloc_stats(ouro_alloc_stats_t *out) {
    if (!out) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_alloc_stats: out is NULL");
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->nclasses = OURO_NCLASSES;
    for (unsigned c = 0; c < OURO_NCLASSES; c++) out->classes[c].block_size = _ouro_class_size[c];
    out->pool_size = OURO_POOL_SIZE;
    out->arena_size = OURO_ARENA_SIZE;
    pthread_mutex_lock(&_ouro_arena_lock);
    _ouro_arena_foreach_locked(stats_arena, out);
    out->pools_abandoned = _ouro_arena_abandoned_count_locked();
    _ouro_arena_unlock();
    ouro_alloc_counters *k = &_ouro_counters;
    out->arenas = ouro_load_relaxed(&k->arenas);
    out->arenas_peak = ouro_load_relaxed(&k->arenas_peak);
    out->arenas_allocated = ouro_load_relaxed(&k->arenas_allocated);
    out->arenas_reclaimed = ouro_load_relaxed(&k->arenas_reclaimed);
    out->large_blocks = ouro_load_relaxed(&k->large_blocks);
    out->large_bytes = ouro_load_relaxed(&k->large_bytes);
    out->bytes_mapped = ouro_load_relaxed(&k->bytes_mapped);
    out->bytes_mapped_peak = ouro_load_relaxed(&k->bytes_mapped_peak);
    out->bytes_returned = ouro_load_relaxed(&k->bytes_returned);
    out->os_map_calls = ouro_load_relaxed(&k->os_map_calls);
    out->os_map_failures = ouro_load_relaxed(&k->os_map_failures);
    _ouro_heap_counts(&out->heaps, &out->heaps_cached);
    return 0;
}

int ouro_alloc_stats_json(FILE *f) {
    ouro_alloc_stats_t st;
    if (!f) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_alloc_stats_json: out is NULL");
        return -1;
    }
    ouro_alloc_stats(&st);
    fprintf(f, "{\"classes\":[");
    for (size_t c = 0; c < st.nclasses; c++) {
        const ouro_alloc_class_stats *k = &st.classes[c];
        fprintf(f, "%s{\"block_size\":%zu,\"pools\":%zu,\"blocks_in_use\":%zu,\"blocks_free\":%zu}", c ? "," : "",
                k->block_size, k->pools, k->blocks_in_use, k->blocks_free);
    }
    fprintf(f,
            "],\"pool_size\":%zu,\"arena_size\":%zu,\"arenas\":%zu,\"arenas_peak\":%zu,\"arenas_allocated\":%zu,"
            "\"arenas_reclaimed\":%zu,\"pools_total\":%zu,\"pools_free\":%zu,\"pools_deferred\":%zu,"
            "\"pools_abandoned\":%zu,\"large_blocks\":%zu,\"large_bytes\":%zu,\"bytes_mapped\":%zu,"
            "\"bytes_mapped_peak\":%zu,\"bytes_returned\":%zu,\"os_map_calls\":%zu,\"os_map_failures\":%zu,"
            "\"heaps\":%zu,\"heaps_cached\":%zu}\n",
            st.pool_size, st.arena_size, st.arenas, st.arenas_peak, st.arenas_allocated, st.arenas_reclaimed,
            st.pools_total, st.pools_free, st.pools_deferred, st.pools_abandoned, st.large_blocks, st.large_bytes,
            st.bytes_mapped, st.bytes_mapped_peak, st.bytes_returned, st.os_map_calls, st.os_map_failures, st.heaps,
            st.heaps_cached);
    return 0;
}

int ouro_alloc_dump(FILE *f) {
    ouro_alloc_stats_t st;
    if (!f) {
        _ouro_err_set(OURO_ERR_INVALID, "ouro_alloc_dump: out is NULL");
        return -1;
    }
    ouro_alloc_stats(&st);
    size_t in_use_bytes = 0, avail_bytes = 0, pools_used = 0;
    fprintf(f, "Small block threshold = %d, in %zu size classes.\n\n", OURO_MEDIUM_MAX, st.nclasses);
    fprintf(f, "class   size   num pools   blocks in use  avail blocks\n");
    fprintf(f, "-----   ----   ---------   -------------  ------------\n");
    for (size_t c = 0; c < st.nclasses; c++) {
        const ouro_alloc_class_stats *k = &st.classes[c];
        if (!k->pools) continue;
        fprintf(f, "%5zu %6zu %11zu %15zu %13zu\n", c, k->block_size, k->pools, k->blocks_in_use, k->blocks_free);
        in_use_bytes += k->blocks_in_use * k->block_size;
        avail_bytes += k->blocks_free * k->block_size;
        pools_used += k->pools;
    }
    size_t quant = pools_used * OURO_POOL_SIZE - in_use_bytes - avail_bytes;
    fprintf(f, "\n");
    fprintf(f, "# arenas allocated total           = %15zu\n", st.arenas_allocated);
    fprintf(f, "# arenas reclaimed                 = %15zu\n", st.arenas_reclaimed);
    fprintf(f, "# arenas highwater mark            = %15zu\n", st.arenas_peak);
    fprintf(f, "# arenas allocated current         = %15zu\n", st.arenas);
    fprintf(f, "%zu arenas * %zu bytes/arena %*s= %15zu\n", st.arenas, st.arena_size, 8, "", st.arenas * st.arena_size);
    fprintf(f, "\n");
    fprintf(f, "# bytes in allocated blocks        = %15zu\n", in_use_bytes);
    fprintf(f, "# bytes in available blocks        = %15zu\n", avail_bytes);
    fprintf(f, "%zu unused pools * %zu bytes %*s= %15zu\n", st.pools_free, st.pool_size, 10, "",
            st.pools_free * st.pool_size);
    fprintf(f, "# pools waiting for a grace period = %15zu\n", st.pools_deferred);
    fprintf(f, "# pools abandoned by exited threads= %15zu\n", st.pools_abandoned);
    fprintf(f, "# bytes lost to quantization       = %15zu\n", quant);
    fprintf(f, "# bytes lost to arena headers      = %15zu (pool descriptors)\n", st.arenas * OURO_POOL_SIZE);
    fprintf(f, "# large blocks                     = %15zu (%zu bytes)\n", st.large_blocks, st.large_bytes);
    fprintf(f, "# bytes mapped now / peak          = %15zu / %zu\n", st.bytes_mapped, st.bytes_mapped_peak);
    fprintf(f, "# bytes returned to the OS         = %15zu\n", st.bytes_returned);
    fprintf(f, "# thread heaps live / cached       = %15zu / %zu\n", st.heaps, st.heaps_cached);
    return 0;
}
