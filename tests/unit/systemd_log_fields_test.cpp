// Structured journal fields: log::Fields guards, as the systemd module uses
// them for lines about one unit, reach the sink (here the stderr sink, which
// appends them as KEY=value).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "log/log.hpp"
#include "systemd/logic.hpp"

using namespace crisd;

namespace {

// Captures what the process writes to stderr while it lives.
class StderrCapture {
public:
    StderrCapture() {
        char tmpl[] = "/tmp/crisd-log-test-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        path_ = tmpl;
        std::fflush(stderr);
        saved_ = ::dup(2);
        ::dup2(fd, 2);
        ::close(fd);
    }
    std::string finish() {
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        std::ifstream in(path_);
        std::stringstream ss;
        ss << in.rdbuf();
        ::unlink(path_.c_str());
        return ss.str();
    }

private:
    std::string path_;
    int saved_ = -1;
};

}  // namespace

TEST(LogFields, GuardsNestAndUnwind) {
    EXPECT_TRUE(log::current_fields().empty());
    {
        log::Fields a{{"POD_ID", "p1"}};
        {
            log::Fields b{{"CONTAINER_ID", "c1"}, {"CONTAINER_NAME", "web"}};
            ASSERT_EQ(log::current_fields().size(), 3u);
            EXPECT_EQ(log::current_fields()[2].second, "web");
        }
        ASSERT_EQ(log::current_fields().size(), 1u);
        EXPECT_EQ(log::current_fields()[0].first, "POD_ID");
    }
    EXPECT_TRUE(log::current_fields().empty());
}

TEST(LogFields, PerThread) {
    log::Fields a{{"CONTAINER_ID", "main"}};
    std::thread([] { EXPECT_TRUE(log::current_fields().empty()); }).join();
    EXPECT_EQ(log::current_fields().size(), 1u);
}

TEST(LogFields, ReachTheSinkForUnitLines) {
    log::setup("info", log::Target::Stderr);
    const std::string id(64, 'c');
    StderrCapture cap;
    {
        // What the systemd module does around a line about one unit.
        const auto fields = systemd::unit_log_fields("crisd-" + id + ".scope");
        log::Fields f{fields[0], fields[1], fields[2]};
        spdlog::info("started the scope");
    }
    spdlog::info("no fields");
    const auto out = cap.finish();
    const auto first = out.substr(0, out.find('\n'));
    EXPECT_NE(first.find("started the scope"), std::string::npos) << out;
    EXPECT_NE(first.find("CRISD_UNIT=crisd-" + id + ".scope"), std::string::npos) << out;
    EXPECT_NE(first.find("CONTAINER_ID=cccccccccccc "), std::string::npos) << out;
    EXPECT_NE(first.find("CONTAINER_ID_FULL=" + id), std::string::npos) << out;
    const auto second = out.substr(out.find('\n') + 1);
    EXPECT_NE(second.find("no fields"), std::string::npos) << out;
    EXPECT_EQ(second.find("CONTAINER_ID"), std::string::npos) << out;
}
