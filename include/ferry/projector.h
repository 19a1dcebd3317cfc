/*
 * The projector: folds a customer's event log through the mapping into the
 * state the cloud should have (desired), compares it with what ferry last put
 * in the cloud (applied), and plans the calls that close the gap. It owns
 * every projection and applied-state format; the applier (ferry/cloud.h)
 * performs the calls and reports each outcome back through
 * ferry_projector_record_*, which writes applied state, the audit record and
 * the dirty mark in one batch.
 *
 * Work is proportional to the change: a fold touches only the entities the
 * folded rows can affect (see src/projector/fold.c's DESIGN block).
 */
#ifndef FERRY_PROJECTOR_H
#define FERRY_PROJECTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry/ferry.h"
#include "ferry/mapping.h"
#include "ferry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ferry_projector ferry_projector;

typedef struct ferry_projector_opts {
  const char *id_field;           /* the cloud's id field, default "id" */
  const char *external_key_field; /* default "legacy_key" */
  size_t fold_batch_events;       /* events per fold batch (one atomic commit); 0: 10,000 */
} ferry_projector_opts;

/* Opens customer's projection over store with mapping (both borrowed, must
 * outlive it). Fails with FERRY_EMAPPING_CHANGED (and a message telling the
 * user to run `ferry replay`) when the projection was built with another
 * mapping — unless allow_mapping_change (replay, status, explain). */
ferry_status ferry_projector_open(ferry_projector **out, ferry_store *store,
                                  const ferry_mapping *mapping, const char *customer,
                                  const ferry_projector_opts *opts, bool allow_mapping_change,
                                  ferry_error *err);
void ferry_projector_close(ferry_projector *p);

typedef struct ferry_projection_info {
  uint64_t head_seq;       /* the log's head */
  uint64_t folded_seq;     /* events folded into the projection */
  bool held;               /* rewound with --hold */
  uint64_t hold_seq;
  bool mapping_changed;    /* recorded mapping differs from the current one */
  char mapping_hash[40];   /* the recorded one ("" before the first fold) */
  uint64_t dirty;          /* entities whose cloud state differs from desired */
  uint64_t failed;         /* entities the cloud refused */
  int64_t last_sync_us;    /* 0: never */
  char last_sync_result[128];
  bool restored;           /* from a backup, no clean sync since: creates look up first */
} ferry_projection_info;

ferry_status ferry_projector_info(ferry_projector *p, ferry_projection_info *info, ferry_error *err);

/* Progress of a long fold: events done of total. */
typedef void (*ferry_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Folds the events after the checkpoint (up to the head, or the hold) into the
 * projection, in batches each committed atomically with its checkpoint.
 * *folded (may be NULL) gets the number of events folded. */
ferry_status ferry_projector_fold(ferry_projector *p, ferry_progress_fn progress, void *arg,
                                  uint64_t *folded, ferry_error *err);

/* Resets the projection to the state as of to_seq (refolding 1..to_seq);
 * applied state is untouched, so the next sync sends the difference. With
 * hold the projection stays at to_seq until ferry_projector_resume. */
ferry_status ferry_projector_rewind(ferry_projector *p, uint64_t to_seq, bool hold,
                                    ferry_progress_fn progress, void *arg, ferry_error *err);
ferry_status ferry_projector_resume(ferry_projector *p, ferry_error *err);
/* Rebuilds the projection from seq 0 with the current mapping (and records it). */
ferry_status ferry_projector_replay(ferry_projector *p, ferry_progress_fn progress, void *arg,
                                    ferry_error *err);

/* Tables the mapping names that the customer's log has never mentioned. */
ferry_status ferry_projector_unseen_tables(ferry_projector *p, char ***tables, size_t *n,
                                           ferry_error *err);

/* ------------------------------------------------------------------ plan --- */

typedef enum ferry_call_kind {
  FERRY_CALL_NONE = 0,   /* dirty but nothing to send (e.g. already equal) */
  FERRY_CALL_CREATE = 1,
  FERRY_CALL_PATCH = 2,
  FERRY_CALL_DELETE = 3,
  FERRY_CALL_WAIT = 4    /* references an entity that is not in the cloud yet */
} ferry_call_kind;

/* One planned cloud call. Owned by the projector's callback scope unless
 * copied with ferry_call_dup. */
typedef struct ferry_call {
  ferry_call_kind kind;
  char *entity;          /* entity type */
  char *key;             /* entity key */
  unsigned rank;         /* reference order: referenced types have lower ranks */
  char *endpoint;        /* "/contacts" */
  char *cloud_id;        /* PATCH/DELETE: the id as JSON text ("7" or "\"ab\""); else NULL */
  json_t *body;          /* CREATE: full payload with the external key; PATCH: changed fields */
  json_t *resolved;      /* CREATE/PATCH: the full payload the cloud will have afterwards */
  char **fields;         /* changed field names (CREATE: all), sorted */
  size_t nfields;
  uint64_t *seqs;        /* the events that caused it */
  size_t nseqs;
  char *external_key;    /* "entity/key": the external key field's value */
  uint64_t generation;   /* CREATE: the create generation the Idempotency-Key derives from */
  bool resume_create;    /* CREATE: an earlier attempt may have reached the cloud */
  char *waits_for;       /* WAIT: "entity/key" it waits for */
  void *state;           /* the projector's: the records the plan read, which the
                          * applier hooks use instead of reading them again
                          * (not copied by ferry_call_dup) */
} ferry_call;

ferry_call *ferry_call_dup(const ferry_call *c);
void ferry_call_free(ferry_call *c);

/* Plans the calls for every dirty entity: creates and patches in ascending
 * rank, then deletes in descending rank; fn gets each (including NONE and
 * WAIT so callers can report them) and may stop the walk by returning
 * non-zero. Read-only: the projection is not changed. With phase >= 0 only
 * that phase: 2*rank for creates/patches of rank, 2*nranks-1-2*rank... see
 * ferry_projector_phases. */
ferry_status ferry_projector_plan(ferry_projector *p, int (*fn)(void *arg, const ferry_call *c),
                                  void *arg, ferry_error *err);

/* The applier's view: the plan split into phases it must run in order
 * (every call of a phase may run concurrently). Phase i of n.
 * A walk of a phase may stop early (fn returns non-zero); with a cursor,
 * the next walk of that phase resumes after the last entity it visited, so
 * walking a phase in chunks costs the phase once, not once per chunk (a
 * zeroed cursor starts at the beginning; reset it for a new phase or pass).
 * fn may take the call: it sets *c to NULL and frees it with ferry_call_free. */
typedef struct ferry_plan_cursor {
  unsigned phase;
  char *key; /* the dirty key last visited; NULL: none yet */
  size_t len;
} ferry_plan_cursor;
void ferry_plan_cursor_reset(ferry_plan_cursor *cur);

unsigned ferry_projector_phases(const ferry_projector *p);
ferry_status ferry_projector_plan_phase(ferry_projector *p, unsigned phase, ferry_plan_cursor *cur,
                                        int (*fn)(void *arg, ferry_call **c), void *arg,
                                        ferry_error *err);

/* Plans one entity now (after earlier phases changed applied state). */
ferry_status ferry_projector_plan_entity(ferry_projector *p, const char *entity, const char *key,
                                         ferry_call **out, ferry_error *err);

/* ---------------------------------------------------------- applier hooks --- */

/* Before the first attempt of a create: stores the create intent and returns
 * the generation to derive the Idempotency-Key from. The intent is written
 * without waiting for the disk: the caller must call ferry_projector_sync_wal
 * before sending the request (one sync for a group of creates), so that
 * after a power loss the retry knows an earlier attempt may have reached the
 * cloud. If an earlier intent is pending (a crash or an ambiguous answer),
 * keeps its generation and sets *resume so the applier looks the record up
 * by external key first; so does every create of a restored projection. */
ferry_status ferry_projector_begin_create(ferry_projector *p, const ferry_call *c,
                                          uint64_t *generation, bool *resume, ferry_error *err);

/* Before the first attempt of any call: for a create, as begin_create; for a
 * PATCH or DELETE, marks the entity uncertain until its outcome is recorded,
 * so a call whose answer is lost (a crash, retries exhausted after the cloud
 * applied it) is sent again in full rather than trusted or forgotten. Like
 * begin_create, written without a sync: sync the WAL before sending. */
ferry_status ferry_projector_begin_call(ferry_projector *p, const ferry_call *c,
                                        uint64_t *generation, bool *resume, ferry_error *err);

typedef enum ferry_outcome {
  FERRY_OUTCOME_OK = 0,      /* 2xx */
  FERRY_OUTCOME_ADOPTED = 1, /* create: found an existing record by external key */
  FERRY_OUTCOME_GONE = 2,    /* delete or patch: 404, the record is not there */
  FERRY_OUTCOME_FAILED = 3,  /* refused (4xx other than 404/408/429) */
  FERRY_OUTCOME_UNKNOWN = 4  /* gave up without knowing (e.g. shutdown): leave it dirty */
} ferry_outcome;

typedef struct ferry_call_result {
  ferry_outcome outcome;
  int http_status;       /* last status, 0 if no answer */
  const char *cloud_id;  /* CREATE/ADOPTED: the new id as JSON text */
  const char *method;    /* as sent */
  const char *path;
  const char *error;     /* FAILED: a short reason (status and response excerpt) */
  unsigned attempts;
  int64_t latency_us;
} ferry_call_result;

/* Records a finished call in one write batch: applied state (cloud id,
 * payload), the audit record, the dirty mark removed (or kept), and the
 * entities that reference this one marked dirty when its cloud id changed. */
ferry_status ferry_projector_record(ferry_projector *p, const ferry_call *c,
                                    const ferry_call_result *r, ferry_error *err);

/* Makes every recorded outcome (written without waiting for the disk) and
 * create intent durable: one WAL sync for many calls. */
ferry_status ferry_projector_sync_wal(ferry_projector *p, ferry_error *err);

/* A write group: from group_begin on, intents and outcomes collect in one
 * pending batch, which ferry_projector_flush writes (with the checkpoint's
 * audit counter), so many finished calls cost one write. Until then they
 * are invisible to reads: flush before a plan walk, and before sending
 * calls whose intents are pending (flush with sync). A crash loses only
 * pending outcomes: their entities stay dirty, with the intent or in-doubt
 * mark written before the call was sent, exactly as if the crash had come
 * before the answer. group_end flushes and stops grouping.
 * flush_start hands the group to a writer thread (sync: which then syncs
 * the WAL) and returns: its writes become visible by the next flush or
 * flush_start, which wait for it (and report its error), so the event loop
 * goes on with the network meanwhile. flush_poll says without waiting
 * whether that write is still running (*busy), or reports its outcome.
 * Writes stay in order: one group is written at a time. */
ferry_status ferry_projector_group_begin(ferry_projector *p, ferry_error *err);
ferry_status ferry_projector_flush(ferry_projector *p, bool sync, ferry_error *err);
ferry_status ferry_projector_flush_start(ferry_projector *p, bool sync, ferry_error *err);
ferry_status ferry_projector_flush_poll(ferry_projector *p, bool *busy, ferry_error *err);
ferry_status ferry_projector_group_end(ferry_projector *p, ferry_error *err);
/* Writes pending in the group. */
size_t ferry_projector_pending(const ferry_projector *p);

/* Marks every failed entity dirty again (sync --retry-failed). */
ferry_status ferry_projector_retry_failed(ferry_projector *p, uint64_t *n, ferry_error *err);

/* Calls fn for every failed entity with the cloud's last refusal; fn returns
 * non-zero to stop. */
ferry_status ferry_projector_failed(ferry_projector *p,
                                    int (*fn)(void *arg, const char *entity, const char *key,
                                              int http_status, const char *error),
                                    void *arg, ferry_error *err);

/* Records the end of a sync run (status shows it). clean: the run ended with
 * nothing failed or left to send, which ends a restored projection's
 * look-up-first creates (ferry_backup). */
ferry_status ferry_projector_note_sync(ferry_projector *p, const char *result, bool clean,
                                       ferry_error *err);

/* ferry_store_backup, then marks every customer in the copy as restored: a
 * data directory put back from a backup may be older than the cloud (ferry
 * made records after the backup that the copy does not know of), so until a
 * sync ends clean each create first looks its record up by external key and
 * adopts what it finds, also from a cloud that ignores Idempotency-Key. If
 * marking fails the copy is removed. */
ferry_status ferry_backup(ferry_store *s, const char *dir, ferry_error *err);

/* ------------------------------------------------------- explain / history --- */

/* desired, applied, cloud id and the legacy rows the entity was built from
 * (table, key, version, seq), as a new JSON object. */
ferry_status ferry_projector_explain(ferry_projector *p, const char *entity, const char *key,
                                     json_t **out, ferry_error *err);

/* Audit records, oldest first, as JSON objects; filter by entity "E/KEY" or
 * legacy row "TABLE/KEY" (either may be NULL). */
ferry_status ferry_projector_history(ferry_projector *p, const char *entity_filter,
                                     const char *row_filter,
                                     int (*fn)(void *arg, json_t *record), void *arg,
                                     ferry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_PROJECTOR_H */
