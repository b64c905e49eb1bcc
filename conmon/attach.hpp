// The attach socket <socket-dir>/attach (SOCK_SEQPACKET, mode 0600, as conmon
// does it). Any number of clients get every output chunk as "<1|2><bytes>";
// the first client that sends data owns stdin until it goes away, and what it
// sends is written to the container's stdin. A client ends its input with
// shutdown(SHUT_WR) and keeps receiving output; it gives up stdin then (when
// it owned it or nobody did). With stdin_once the container's stdin is closed
// when the client holding it ends its input or detaches. While more than
// 1 MiB of stdin waits for the container, the stdin owner's socket is not
// read (its sends block, and crisd stops reading its own client); nothing
// is dropped. A client that does not keep up with the output is
// disconnected; detaching never touches the container.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/fd.hpp"
#include "loop.hpp"
#include "stdio.hpp"

namespace crisd::conmon {

class AttachServer {
public:
    // Throws crisd::Error naming the path.
    AttachServer(Loop& loop, const std::string& path, Stdio& stdio, bool stdin_once);
    ~AttachServer();

    void broadcast(uint8_t stream, std::string_view data);
    // Disconnects everyone (the container is gone) and removes the socket.
    void close_all();

private:
    struct Client {
        UniqueFd fd;
        uint64_t token = 0;
        bool input_closed = false;  // it half-closed: output only
        bool paused = false;        // not read while the container's stdin is full
    };
    void on_accept();
    void on_client(uint64_t id, uint32_t events);
    void close_input(uint64_t id);
    void resume_stdin_owner();
    void drop(uint64_t id, const char* why);

    Loop& loop_;
    std::string path_;
    Stdio& stdio_;
    bool stdin_once_;
    UniqueFd listen_;
    uint64_t listen_token_ = 0;
    std::map<uint64_t, Client> clients_;
    uint64_t next_id_ = 1;
    uint64_t stdin_owner_ = 0;
};

}  // namespace crisd::conmon
