/*
 * handle.h — what a pbx_t is: the transport a mailbox's name chose, the transport's state, and
 * the loans the API layer makes by copying for transports without loans of their own (loan.c).
 * Private to the API layer (mailbox.c, loan.c).
 */
#ifndef PBX_HANDLE_H
#define PBX_HANDLE_H

#include <pthread.h>

#include "transport.h"

struct pbx_copy_loan;

struct pbx {
    const struct pbx_transport *t;
    void *state;
    pthread_mutex_t copies_lock;  /* guards copies */
    struct pbx_copy_loan *copies; /* loans by copying still held (loan.c) */
};

/* At close: end the loans by copying that q still holds (loan.c). */
void pbx__copy_loans_end(struct pbx *q);

#endif
