/*
 * Internal: the projector's state and the helpers its files share
 * (projector.c: open/state/rewind; fold.c: fold and derive; plan.c: plans;
 * record.c: applier outcomes and audit; explain.c: explain and history).
 */
#ifndef FERRY_PROJECTOR_PROJ_H
#define FERRY_PROJECTOR_PROJ_H

#include <stdbool.h>

#include "common/arena.h"
#include "ferry/mapping.h"
#include "ferry/projector.h"
#include "ferry/store.h"
#include "ferry/v1/state.pb-c.h"
#include "projector/keys.h"

#define FERRY_CAUSES_MAX 64   /* cause seqs kept per pending entity */
#define FERRY_EKEY_MAX 1024   /* entity keys, like row keys */

struct ferry_projector {
  ferry_store *store;
  const ferry_mapping *map;
  char *customer;
  char *id_field;
  char *ext_field;
  size_t fold_batch;       /* events per fold batch */
  size_t nentities;
  const ferry_mapping_join *joins;
  size_t njoins;
  /* the checkpoint, as last read or written */
  uint64_t folded_seq;
  bool held;
  uint64_t hold_seq;
  char *mapping_hash;      /* recorded with the projection ("" before the first fold) */
  uint64_t rebuild_target; /* a rewind/replay in progress (with rebuilding) */
  bool rebuilding;
  int64_t last_fold_us, last_sync_us;
  char *last_sync_result;
  uint64_t audit_seq;
  bool restored;           /* from a backup: creates look up first (ProjectionState.restored) */
  /* the applier's write group (ferry_projector_group_begin) */
  bool grouping;
  ferry_wbatch *group;     /* pending writes, created on the first */
  ferry_wbatch *writing;   /* a flushed group still being written (flush_start) */
  ferry_bwriter *writer;   /* writes it; created on the first flush_start */
  uint64_t cleared;        /* dirty marks removed since the dirty range was compacted */
  /* a fold's throwaway protobuf messages (an event while it is applied, a
   * mirror row while it becomes JSON): unpacked into these and dropped
   * whole, instead of a malloc and a free per string and column */
  arena ev_scratch, row_scratch;
};

/* protobuf-c allocates through this from an arena (free does nothing). */
ProtobufCAllocator proj_scratch_allocator(arena *a);

/* A planned call's state (ferry_call.state): the entity's records as the
 * plan read them. The applier hooks use them instead of reading again, and
 * keep them up to date with what they write (the create intent, the
 * in-doubt mark): between plan and record nothing else writes an entity's
 * desired or applied record, since a sync does not run beside a fold. */
typedef struct proj_call_state {
  Ferry__V1__DesiredEntity *d;
  Ferry__V1__AppliedEntity *a;
} proj_call_state;
void proj_call_state_free(void *state);
/* The call's records: its state's (*owned false) or read now (*owned true:
 * the caller frees them). */
ferry_status proj_call_records(ferry_projector *p, const ferry_call *c, Ferry__V1__DesiredEntity **d,
                               Ferry__V1__AppliedEntity **a, bool *owned, ferry_error *err);

/* The batch an applier write goes into: the open group's, or a new one
 * (NULL when out of memory). proj_written commits and frees a new one, or
 * leaves a group's pending; on error it drops the whole group, since a
 * half-recorded call must not be committed (its entity stays dirty and in
 * doubt, as after a crash). */
ferry_wbatch *proj_writer(ferry_projector *p);
ferry_status proj_written(ferry_projector *p, ferry_wbatch *b, ferry_status st, ferry_error *err);

/* Reads / writes the checkpoint (meta "projection"). put adds it to a batch. */
ferry_status proj_state_load(ferry_projector *p, ferry_error *err);
ferry_status proj_state_put(ferry_projector *p, ferry_wbatch *b, ferry_error *err);

/* Reads one value through a batch (its own writes first, then the store) or,
 * with b NULL, from the store. FERRY_ENOTFOUND when absent. */
ferry_status proj_get(ferry_projector *p, ferry_wbatch *b, ferry_cf cf, const ferry_key *k,
                      char **val, size_t *vlen, ferry_error *err);

/* Decoded records, NULL when absent. */
ferry_status proj_desired_get(ferry_projector *p, ferry_wbatch *b, const char *entity,
                              const char *ekey, Ferry__V1__DesiredEntity **out, ferry_error *err);
ferry_status proj_applied_get(ferry_projector *p, ferry_wbatch *b, const char *entity,
                              const char *ekey, Ferry__V1__AppliedEntity **out, ferry_error *err);
void proj_put_pb(ferry_wbatch *b, ferry_cf cf, const ferry_key *k, const ProtobufCMessage *msg);

/* Whether the entity's cloud state differs from its desired state. */
bool proj_is_dirty(const Ferry__V1__DesiredEntity *d, const Ferry__V1__AppliedEntity *a);
/* Sets or clears the dirty mark of (entity i, ekey). */
void proj_mark_dirty(ferry_projector *p, ferry_wbatch *b, size_t entity, const char *ekey, bool dirty);
/* Marks every entity that references (entity, ekey) dirty. */
ferry_status proj_mark_referrers(ferry_projector *p, ferry_wbatch *b, size_t entity,
                                 const char *ekey, ferry_error *err);

/* A row source over the mirror as seen through b (NULL: the store); ctx
 * holds p and b and must outlive src. */
typedef struct proj_src {
  ferry_projector *p;
  ferry_wbatch *b;
  struct strmap *lookups; /* rows looked up, while the mirror stands still (may be NULL) */
} proj_src;
void proj_row_source(proj_src *ctx, ferry_row_source *src);
/* The live row (table, key) through b as a JSON object, or NULL; *mr (optional) the record. */
ferry_status proj_mirror_row(ferry_projector *p, ferry_wbatch *b, const char *table,
                             const char *key, json_t **row, Ferry__V1__MirrorRow **mr,
                             ferry_error *err);

/* Folds events (folded_seq, limit] in batches. */
ferry_status proj_fold_to(ferry_projector *p, uint64_t limit, ferry_progress_fn progress,
                          void *arg, uint64_t *folded, ferry_error *err);

/* After a rebuild: every applied entity with no desired state becomes dirty. */
ferry_status proj_reconcile(ferry_projector *p, ferry_error *err);

/* Hex of a 16-byte hash. */
void proj_hex(const uint8_t *b, size_t n, char *out);

#endif /* FERRY_PROJECTOR_PROJ_H */
