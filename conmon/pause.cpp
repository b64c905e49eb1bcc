// crisd-pause: PID 1 of the PID namespace that the containers of a pod share
// (PID mode POD), run as the pod's infra container (src/runtime/infra.hpp).
// It waits, reaps every zombie the kernel hands to it (orphans of the pod's
// containers are re-parented to PID 1 of their namespace), and exits 0 on
// SIGTERM or SIGINT. The kernel delivers no signal to a namespace's PID 1
// without a handler, so the handlers are what make it stoppable.
//
// Linked statically (libc only, no C++ runtime used): the infra container's
// root holds this one file and no libraries.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

void leave(int) { _exit(0); }

void reap(int) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

}  // namespace

int main() {
    struct sigaction down {};
    down.sa_handler = leave;
    if (sigaction(SIGTERM, &down, nullptr) != 0 || sigaction(SIGINT, &down, nullptr) != 0) return 1;
    struct sigaction child {};
    child.sa_handler = reap;
    child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &child, nullptr) != 0) return 2;
    // Children that ended before the handler was there.
    reap(0);
    for (;;) pause();
}
