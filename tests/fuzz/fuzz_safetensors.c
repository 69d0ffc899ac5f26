/* libFuzzer entry point for the safetensors reader. The reader opens paths only (it maps the file), so
 * each input is written to a scratch folder (mkdtemp in /dev/shm, else /tmp; removed after every input)
 * and read twice:
 *   - as one .safetensors file (qm_checkpoint_open_file): when accepted, every tensor is looked up by
 *     name, checked to lie inside the file and to hold shape x dtype bytes, and read byte by byte;
 *   - as model.safetensors.index.json of a folder that also holds two small valid shards
 *     (qm_checkpoint_open), so that the index JSON is fuzzed against real shard files.
 * Seeds: corpus/safetensors/ (tiny files with two tensors, index files, broken variants). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"

/* Two shards as the index seeds name them: a.weight (F32 [2]) in shard 1, b.weight (BF16 [2, 2]) and
 * c.bias (F16 [0]) in shard 2. */
static const char shard1_hdr[] = "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
static const char shard2_hdr[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                 "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                                 "\"c.bias\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[8,8]}}";

static int write_file(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = (na && fwrite(a, 1, na, f) != na) || (nb && fwrite(b, 1, nb, f) != nb);
    return (fclose(f) != 0 || bad) ? -1 : 0;
}

/* A shard: 8-byte length, header padded with spaces to a multiple of 8, 8 bytes of data. */
static int write_shard(const char *path, const char *hdr) {
    unsigned char buf[512];
    size_t n = strlen(hdr), padded = (n + 7) / 8 * 8;
    if (8 + padded + 8 > sizeof buf) abort();
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, n);
    memset(buf + 8 + n, ' ', padded - n);
    for (int i = 0; i < 8; i++) buf[8 + padded + i] = (unsigned char)(0x3f + i);
    return write_file(path, buf, 8 + padded + 8, NULL, 0);
}

static void walk(const qm_checkpoint *ck) {
    unsigned sum = 0;
    for (int i = 0; i < qm_checkpoint_count(ck); i++) {
        const qm_tensor_ref *r = qm_checkpoint_at(ck, i);
        if (!r || qm_checkpoint_find(ck, r->name) != r || r->ndim < 0 || r->ndim > QM_MAX_DIMS) abort();
        uint64_t count = 1;
        for (int d = 0; d < r->ndim; d++) count *= (uint64_t)r->shape[d];
        if (count * qm_dtype_size(r->dtype) != r->nbytes) abort();
        const unsigned char *p = r->data;
        for (size_t k = 0; k < r->nbytes; k++) sum += p[k]; /* ASan checks every byte is mapped */
    }
    if (qm_checkpoint_at(ck, -1) || qm_checkpoint_at(ck, qm_checkpoint_count(ck))) abort();
    volatile unsigned sink = sum;
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* in memory where there is a tmpfs: a disk file system's creates and unlinks cost most of the time */
    char dir[64];
    snprintf(dir, sizeof dir, "%s/qmesh_fuzz_st_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) return 0;
    char single[96], index[112], s1[128], s2[128];
    snprintf(single, sizeof single, "%s/in.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    snprintf(s1, sizeof s1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(s2, sizeof s2, "%s/model-00002-of-00002.safetensors", dir);

    qm_checkpoint *ck;
    qm_error err;
    if (write_file(single, data, size, NULL, 0) == 0 && qm_checkpoint_open_file(single, &ck, &err) == QM_OK) {
        walk(ck);
        qm_checkpoint_close(ck);
    }
    unlink(single);

    if (write_shard(s1, shard1_hdr) == 0 && write_shard(s2, shard2_hdr) == 0 &&
        write_file(index, data, size, NULL, 0) == 0 && qm_checkpoint_open(dir, &ck, &err) == QM_OK) {
        walk(ck);
        qm_checkpoint_close(ck);
    }
    unlink(index);
    unlink(s1);
    unlink(s2);
    rmdir(dir);
    return 0;
}
