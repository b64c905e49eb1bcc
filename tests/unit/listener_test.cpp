#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "server/listener.hpp"

namespace fs = std::filesystem;
using crisd::Code;
using crisd::Error;
using crisd::UniqueFd;
using crisd::server::Listener;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/crisd-listen-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string path(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

UniqueFd bound_socket(const std::string& path, bool listening) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (listening) {
        EXPECT_EQ(::listen(fd.get(), 1), 0);
    }
    return fd;
}

bool can_connect(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

}  // namespace

TEST(Listener, BindsWithMode0660AndCreatesTheParent) {
    TempDir dir;
    const auto path = dir.path("sub/dir/crisd.sock");
    {
        auto l = Listener::bind(path);
        struct stat st {};
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 07777, 0660u);
        EXPECT_FALSE(l.inherited());
        EXPECT_TRUE(can_connect(path));
    }
    EXPECT_FALSE(fs::exists(path)) << "the listener removes the socket it bound";
}

TEST(Listener, ReplacesAStaleSocket) {
    TempDir dir;
    const auto path = dir.path("crisd.sock");
    { auto stale = bound_socket(path, false); }  // closed: the file stays, nobody listens
    ASSERT_TRUE(fs::exists(path));
    auto l = Listener::bind(path);
    EXPECT_TRUE(can_connect(path));
}

TEST(Listener, RefusesALiveSocket) {
    TempDir dir;
    const auto path = dir.path("crisd.sock");
    auto live = bound_socket(path, true);
    try {
        Listener::bind(path);
        FAIL() << "bound over a live socket";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::AlreadyExists);
        EXPECT_NE(std::string(e.what()).find("already listening on " + path), std::string::npos);
    }
    EXPECT_TRUE(fs::exists(path)) << "the live socket file must be left alone";
}

TEST(Listener, RefusesToReplaceAFile) {
    TempDir dir;
    const auto path = dir.path("crisd.sock");
    std::ofstream(path) << "not a socket";
    try {
        Listener::bind(path);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Code::FailedPrecondition);
    }
    EXPECT_TRUE(fs::exists(path));
}

TEST(Listener, RejectsTooLongPaths) {
    EXPECT_THROW(Listener::bind("/tmp/" + std::string(200, 'x')), Error);
}

TEST(Listener, NoSocketFromSystemd) {
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    EXPECT_FALSE(Listener::from_systemd().has_value());
}

// systemd passes the socket as fd 3 with LISTEN_PID/LISTEN_FDS set.
class InheritedFd : public ::testing::Test {
protected:
    void SetUp() override { saved_ = ::dup(3); }
    void TearDown() override {
        if (saved_ >= 0) {
            ::dup2(saved_, 3);
            ::close(saved_);
        } else {
            ::close(3);
        }
        ::unsetenv("LISTEN_FDS");
        ::unsetenv("LISTEN_PID");
    }
    void pass_as_fd3(int fd) {
        ASSERT_EQ(::dup2(fd, 3), 3);
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        ::setenv("LISTEN_FDS", "1", 1);
    }
    int saved_ = -1;
};

TEST_F(InheritedFd, TakesTheListeningSocket) {
    TempDir dir;
    const auto path = dir.path("activated.sock");
    auto sock = bound_socket(path, true);
    pass_as_fd3(sock.get());
    auto l = Listener::from_systemd();
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->fd(), 3);
    EXPECT_TRUE(l->inherited());
    EXPECT_EQ(l->path(), path);
    EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr) << "cleared so children do not inherit it";
    l.reset();
    EXPECT_TRUE(fs::exists(path)) << "an inherited socket's file belongs to systemd";
}

TEST_F(InheritedFd, RejectsASocketThatDoesNotListen) {
    TempDir dir;
    auto sock = bound_socket(dir.path("x.sock"), false);
    pass_as_fd3(sock.get());
    EXPECT_THROW(Listener::from_systemd(), Error);
}
