/*
 * crash.h — named points at which a test build kills its own process.
 *
 * Crash safety is a promise about every instruction, and tests cannot aim a SIGKILL at an
 * instruction. So the steps that change shared state carry named crash points. In the library
 * that programs link they compile to nothing. In the build the tests link (PBX_CRASH_POINTS
 * defined), a point whose name matches the environment variable PBX_CRASH_AT kills the process
 * with SIGKILL when it is reached ("NAME", or "NAME:N" for the N-th time it is reached), so a
 * test can kill a helper process exactly there and check what the survivors find. PBX_STOP_AT
 * works the same way but stops the process (SIGSTOP) there, to be continued later; PBX_NAP_AT
 * makes it sleep there for PBX_NAP_MS milliseconds, alive and running.
 */
#ifndef PBX_CRASH_H
#define PBX_CRASH_H

#ifdef PBX_CRASH_POINTS
void pbx__crash_point(const char *name);
#define PBX_CRASH_POINT(name) pbx__crash_point(name)
#else
#define PBX_CRASH_POINT(name) ((void) 0)
#endif

#endif
