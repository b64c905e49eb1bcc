#include "bus/bus.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sdbus-c++/Error.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace crisd::bus {
namespace {

Error connect_error(const std::string& where, const sdbus::Error& e) {
    const Code code = (e.getName() == "org.freedesktop.DBus.Error.AccessDenied" ||
                       e.getName() == "System.Error.EACCES" || e.getName() == "System.Error.EPERM")
                          ? Code::PermissionDenied
                          : Code::Unavailable;
    return Error(code, where + ": " + e.getMessage() + " (" + e.getName() + ")");
}

}  // namespace

Link::~Link() {
    // Slots, proxies and objects go before the connection they live on.
    attachment_.reset();
    conn_.reset();
}

Connection::Connection(ConnectionOptions options)
    : opt_(std::move(options)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!wake_fd_) throw_errno("eventfd");
    thread_ = std::thread([this] { loop(); });
}

Connection::~Connection() {
    stopping_ = true;
    wake();
    thread_.join();
    std::lock_guard lock(mu_);
    link_.reset();
}

std::shared_ptr<Link> Connection::get() {
    std::lock_guard lock(mu_);
    if (link_ && !link_->dead()) return link_;
    if (stopping_) throw Error(Code::Unavailable, opt_.what + ": shutting down");
    return connect_locked();
}

std::shared_ptr<Link> Connection::current() {
    std::lock_guard lock(mu_);
    return (link_ && !link_->dead()) ? link_ : nullptr;
}

std::shared_ptr<Link> Connection::connect_locked() {
    const std::string where =
        opt_.what + ": connecting to " + (opt_.address.empty() ? "the system bus" : opt_.address);
    auto link = std::make_shared<Link>();
    try {
        link->conn_ = opt_.address.empty()
                          ? sdbus::createSystemBusConnection()
                          : sdbus::createSessionBusConnectionWithAddress(opt_.address);
        link->generation_ = ++generations_;
        if (opt_.attach) link->attachment_ = opt_.attach(*link->conn_);
    } catch (const sdbus::Error& e) {
        throw connect_error(where, e);
    }
    link_ = link;
    wake();
    return link;
}

void Connection::drop(const std::shared_ptr<Link>& link) {
    if (!link) return;
    bool was_current = false;
    {
        std::lock_guard lock(mu_);
        if (link_ == link) {
            link_.reset();
            was_current = true;
        }
    }
    if (!link->dead_.exchange(true) && was_current) {
        spdlog::warn("{}: D-Bus connection lost, reconnecting", opt_.what);
        if (opt_.on_lost) opt_.on_lost();
    }
    wake();
}

void Connection::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

void Connection::retry_wait(std::chrono::milliseconds delay) {
    pollfd pfd{wake_fd_.get(), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(delay.count()));
    std::uint64_t v = 0;
    [[maybe_unused]] const auto n = ::read(wake_fd_.get(), &v, sizeof v);
}

void Connection::loop() {
    std::chrono::milliseconds retry{500};
    bool warned = false;
    while (!stopping_) {
        std::shared_ptr<Link> link;
        {
            std::lock_guard lock(mu_);
            link = link_;
        }
        if (!link) {
            if (!opt_.keep_connected) {
                retry_wait(std::chrono::milliseconds(-1));
                continue;
            }
            try {
                {
                    std::lock_guard lock(mu_);
                    if (!link_ && !stopping_) connect_locked();
                }
                if (warned) spdlog::info("{}: connected to the bus", opt_.what);
                warned = false;
                retry = std::chrono::milliseconds(500);
            } catch (const Error& e) {
                if (!warned)
                    spdlog::warn("{}; retrying in the background (up to every {} s)", e.what(),
                                 opt_.max_retry.count() / 1000);
                else
                    spdlog::debug("{}", e.what());
                warned = true;
                retry_wait(retry);
                retry = std::min(retry * 2, opt_.max_retry);
            } catch (const std::exception& e) {
                spdlog::error("{}: {}", opt_.what, e.what());
                retry_wait(retry);
            }
            continue;
        }

        sdbus::IConnection::PollData pd{};
        try {
            while (!stopping_ && link->conn().processPendingRequest()) {
            }
            pd = link->conn().getEventLoopPollData();
        } catch (const sdbus::Error& e) {
            spdlog::debug("{}: dispatch: {}", opt_.what, e.what());
            drop(link);
            continue;
        }
        pollfd fds[2] = {{pd.fd, pd.events, 0}, {wake_fd_.get(), POLLIN, 0}};
        ::poll(fds, 2, pd.getPollTimeout());
        if (fds[1].revents & POLLIN) {
            std::uint64_t v = 0;
            [[maybe_unused]] const auto n = ::read(wake_fd_.get(), &v, sizeof v);
        }
    }
}

}  // namespace crisd::bus
