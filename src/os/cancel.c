/*
 * cancel.c — the one piece of state behind cancel.h: the caller's cancellation state, per
 * thread, while a postbox call has cancellation disabled.
 */
#include "cancel.h"

__thread int pbx__cancel_caller = -1;
