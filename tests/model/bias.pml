/*
 * bias.pml — a model of the biased lock and its revocation (BIAS and REVOCATION in
 * src/shm/lock.h), checked exhaustively by spin: every interleaving of three threads, each of
 * which takes the lock through the bias when it is its own (look, mark busy, look again) and
 * through the word otherwise, may be granted the bias, may die (SIGKILL) at any step, and may
 * give up a limited revocation (a PBX_NOWAIT or timed call) and hand the word back.
 *
 * Checked at every entry into the critical section:
 *   - no live participant is inside beside the one entering (mutual exclusion);
 *   - if a dead participant was inside, the one entering knows it must repair (it took the
 *     word over from a dead holder, or found the owner dead inside), so a half-done change is
 *     never built upon without repair.
 * And no state is left where every live process waits for ever (spin's invalid end states),
 * with the dead never counted as a reason to wait.
 *
 * What the model assumes: sequential consistency. In the code, the owner's busy store and its
 * check of owner are ordered against the revoker's mark and its read of busy by the heavy fence
 * (membarrier, ASYMMETRIC FENCES in src/os/os.h), which is what makes the store-then-load pair
 * on each side behave as it does here. Liveness judgements (a dead holder is seen dead, a live
 * one alive) are assumed right: src/os/ident is what makes them so.
 *
 * tests/model/run.sh runs it (spin -a, cc, ./pan), and runs the protocol of c743dee too
 * (-DC743DEE), which must fail: the model would catch the bug it was written for. -DNO_WINDOW
 * grants without waiting for the revoked owner to leave its fast path's window: that must fail
 * too (a late store of busy wipes the new owner's mark).
 */

#define OWNER 1 /* the thread the lock is biased to at the start */
#define REV   8 /* owner == target + REV: a revocation of target is under way */
#define KILLS 2 /* at most this many deaths per run (the state space stays small) */

byte word = 0;      /* the lock word: the holder's id, 0 when free */
byte owner = OWNER; /* the bias: 0, a thread id, or a thread id + REV */
byte busy = 0;      /* the owner's id while it is inside through the bias */
byte last_owner = 0;  /* the owner revoked last (lock.c, step 1) */
byte left_window = 0; /* last_owner, once it backed off out of its fast path's window */
bool alive[4];
bool inside[4];
byte kills = 0;

/* Enter the critical section, then leave it. */
inline critical(me, repair)
{
    atomic {
        assert(!(alive[1] && inside[1]) && !(alive[2] && inside[2]) && !(alive[3] && inside[3]));
        assert(repair || !((!alive[1] && inside[1]) || (!alive[2] && inside[2]) ||
                           (!alive[3] && inside[3])));
        /* A repair undoes what the dead left half-done. */
        if
        :: repair -> inside[1] = inside[1] && alive[1]; inside[2] = inside[2] && alive[2];
                     inside[3] = inside[3] && alive[3]
        :: else -> skip
        fi;
        inside[me] = true
    }
    inside[me] = false
}

/* Take the word: from 0, or over from a dead holder (then a repair is owed). */
inline take_word(me, repair)
{
    do
    :: atomic { word == 0 -> word = me; break }
    :: atomic { word != 0 && !alive[word] -> word = me; repair = true; break }
    od
}

/* With the word held: revoke the bias, or finish a revocation left undone (lock.c,
 * bias_revoke). gaveup is set when a limited take gives up: the word goes back. */
#ifndef C743DEE
inline revoke(me, repair, gaveup)
{
    if
    :: owner != 0 && owner != me ->
        target = (owner >= REV -> owner - REV : owner);
        if
        :: owner < REV -> left_window = 0; last_owner = target /* step 1 */
        :: else -> skip
        fi;
        owner = target + REV; /* (a finisher stores the same mark again) */
        /* step 2, the fence: nothing to model under sequential consistency */
        do /* step 3 */
        :: busy != target -> break
        :: atomic { busy == target && !alive[target] -> busy = 0; repair = true; break }
        :: busy == target -> gaveup = true; break /* a limited take gives up */
        od;
        if
        :: gaveup -> word = 0
        :: else -> owner = 0 /* step 4 */
        fi
    :: else -> skip
    fi
}
#else
/* The protocol of c743dee, for comparison: owner cleared first, then the wait. spin finds the
 * two holders of issue 13 (a revoker dies while waiting, the next taker finds owner 0). */
inline revoke(me, repair, gaveup)
{
    if
    :: owner != 0 && owner != me ->
        target = owner;
        owner = 0;
        do
        :: busy != target -> break
        :: atomic { busy == target && !alive[target] -> busy = 0; repair = true; break }
        od
    :: else -> skip
    fi
}
#endif

/* May a bias be granted to me (lock.c, window_clear)? */
#if !defined(C743DEE) && !defined(NO_WINDOW)
#define WINDOW_CLEAR(me) (last_owner == 0 || last_owner == me || left_window == last_owner || !alive[last_owner])
#else
#define WINDOW_CLEAR(me) true
#endif

/* A thread of the mailbox. Any of them may be granted the bias (as threads of one process
 * are), and any may be revoked while it is inside its fast path's window: it read
 * owner == itself and has not yet stored busy. */
proctype Thread(byte me)
{
    bool repair, gaveup, entered;
    byte target;
    {
        do
        :: entered = false;
           /* The fast path (lock.h, pbx__block_acquire): look, mark, look again. */
           if
           :: owner == me ->
               busy = me;
               if
               :: owner == me -> critical(me, false); busy = 0; entered = true
               :: else -> busy = 0; left_window = me /* backed off: out of the window */
               fi
           :: else -> skip
           fi;
           if
           :: !entered ->
               repair = false; gaveup = false;
               take_word(me, repair);
               if
               :: owner != 0 && owner != me -> revoke(me, repair, gaveup)
               :: owner == 0 && !repair && WINDOW_CLEAR(me) -> owner = me /* a grant */
               :: else -> skip
               fi;
               if
               :: !gaveup -> critical(me, repair); word = 0
               :: else -> skip
               fi
           :: else -> skip
           fi
        od
    } unless { !alive[me] }
}

/* SIGKILL, at any moment, for at most KILLS participants. */
proctype Killer()
{
    do
    :: kills < KILLS && alive[1] -> alive[1] = false; kills++
    :: kills < KILLS && alive[2] -> alive[2] = false; kills++
    :: kills < KILLS && alive[3] -> alive[3] = false; kills++
    :: kills >= KILLS -> break
    od
}

init
{
    atomic {
        alive[1] = true; alive[2] = true; alive[3] = true;
        run Thread(1); run Thread(2); run Thread(3); run Killer()
    }
}
