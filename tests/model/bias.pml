/*
 * bias.pml — a model of the biased lock and its revocation (BIAS and REVOCATION in
 * src/shm/lock.h), checked exhaustively by spin: every interleaving of one biased owner and two
 * other takers, any of which may die (SIGKILL) at any step, and any taker may give up a limited
 * revocation (a PBX_NOWAIT or timed call) and hand the word back.
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
 * (-DC743DEE), which must fail: the model would catch the bug it was written for.
 */

#define OWNER 1 /* the thread the lock is biased to at the start */
#define REV   8 /* owner == target + REV: a revocation of target is under way */
#define KILLS 2 /* at most this many deaths per run (the state space stays small) */

byte word = 0;      /* the lock word: the holder's id, 0 when free */
byte owner = OWNER; /* the bias: 0, OWNER, or OWNER + REV */
byte busy = 0;      /* OWNER while it is inside through the bias */
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
        owner = target + REV; /* step 1 (a finisher stores the same mark again) */
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

/* The thread the lock is biased to: through the bias when it can, through the word when the
 * bias was taken away, and it may be granted the bias again under the word. */
proctype Owner()
{
    bool repair, gaveup;
    byte target;
    {
        do
        :: busy = OWNER;
           if
           :: owner == OWNER -> critical(OWNER, false); busy = 0
           :: else -> busy = 0;
                      repair = false; gaveup = false;
                      take_word(OWNER, repair);
                      revoke(OWNER, repair, gaveup);
                      if
                      :: !gaveup ->
                          critical(OWNER, repair);
                          if
                          :: owner == 0 -> owner = OWNER /* a grant */
                          :: true -> skip
                          fi;
                          word = 0
                      :: else -> skip
                      fi
           fi
        od
    } unless { !alive[OWNER] }
}

/* A thread that takes the word and revokes whatever bias it finds. */
proctype Taker(byte me)
{
    bool repair, gaveup;
    byte target;
    {
        do
        :: repair = false; gaveup = false;
           take_word(me, repair);
           revoke(me, repair, gaveup);
           if
           :: !gaveup -> critical(me, repair); word = 0
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
        run Owner(); run Taker(2); run Taker(3); run Killer()
    }
}
