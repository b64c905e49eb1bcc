// The kubelet's container log file, in the CRI format:
//   2016-10-06T00:17:09.669794202Z stdout F text
// Every newline-terminated line is one F record; text that does not end in a
// newline yet is written at once as a P record (the kubelet joins P records up
// to the next F), and a line longer than line_max is split into P records.
// Bytes are passed through untouched (invalid UTF-8 included). When the file
// would grow past size_max it is truncated and starts over (as conmon does).
// reopen() (SIGUSR1, crisd's ReopenContainerLog) closes and reopens the path,
// creating it if it was rotated away.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/fd.hpp"

namespace crisd::conmon {

class CriLog {
public:
    using Clock = std::function<timespec()>;

    // Throws crisd::Error naming the path when it cannot be opened.
    CriLog(std::string path, int64_t size_max, size_t line_max, Clock clock = {});

    // stream: 1 stdout, 2 stderr. Throws crisd::Error on a failed write.
    void write(uint8_t stream, std::string_view data);
    void reopen();
    const std::string& path() const { return path_; }
    int64_t size() const { return size_; }

    // "2016-10-06T00:17:09.669794202Z"
    static std::string timestamp(const timespec& ts);

private:
    void open();
    void emit(const std::string& ts, uint8_t stream, bool full, std::string_view text);

    std::string path_;
    int64_t size_max_;
    size_t line_max_;
    Clock clock_;
    UniqueFd fd_;
    int64_t size_ = 0;
    std::string record_;  // reused buffer
};

}  // namespace crisd::conmon
