#include "cri_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/error.hpp"

namespace crisd::conmon {

CriLog::CriLog(std::string path, int64_t size_max, size_t line_max, Clock clock)
    : path_(std::move(path)), size_max_(size_max), line_max_(line_max ? line_max : 1), clock_(std::move(clock)) {
    if (!clock_) {
        clock_ = [] {
            timespec ts{};
            ::clock_gettime(CLOCK_REALTIME, &ts);
            return ts;
        };
    }
    open();
}

void CriLog::open() {
    UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd) throw_errno("opening container log " + path_);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("stat of container log " + path_);
    fd_ = std::move(fd);
    size_ = st.st_size;
}

void CriLog::reopen() {
    with_context("reopening container log", [&] { open(); });
}

std::string CriLog::timestamp(const timespec& ts) {
    tm t{};
    ::gmtime_r(&ts.tv_sec, &t);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", t.tm_year + 1900, t.tm_mon + 1,
                  t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(ts.tv_nsec));
    return buf;
}

void CriLog::emit(const std::string& ts, uint8_t stream, bool full, std::string_view text) {
    record_.clear();
    record_ += ts;
    record_ += stream == 2 ? " stderr " : " stdout ";
    record_ += full ? "F " : "P ";
    record_.append(text);
    record_ += '\n';
    const auto len = static_cast<int64_t>(record_.size());
    if (size_max_ > 0 && size_ > 0 && size_ + len > size_max_) {
        if (::ftruncate(fd_.get(), 0) != 0) throw_errno("truncating container log " + path_ + " at its size cap");
        size_ = 0;
    }
    size_t done = 0;
    while (done < record_.size()) {
        const auto n = ::write(fd_.get(), record_.data() + done, record_.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("writing container log " + path_);
        }
        done += static_cast<size_t>(n);
    }
    size_ += len;
}

void CriLog::write(uint8_t stream, std::string_view data) {
    if (data.empty()) return;
    const std::string ts = timestamp(clock_());
    while (!data.empty()) {
        const auto nl = data.find('\n');
        std::string_view line = data.substr(0, nl);
        const bool terminated = nl != std::string_view::npos;
        data.remove_prefix(terminated ? nl + 1 : data.size());
        while (line.size() > line_max_) {
            emit(ts, stream, false, line.substr(0, line_max_));
            line.remove_prefix(line_max_);
        }
        if (terminated) emit(ts, stream, true, line);
        else if (!line.empty()) emit(ts, stream, false, line);
    }
}

}  // namespace crisd::conmon
