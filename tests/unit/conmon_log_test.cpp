// crisd-conmon's CRI log writer (conmon/cri_log.hpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "cri_log.hpp"

namespace fs = std::filesystem;
using crisd::conmon::CriLog;

namespace {

class CriLogTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/crisd-conmon-log-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        path_ = dir_ + "/c.log";
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string content(const std::string& p = "") const {
        std::ifstream in(p.empty() ? path_ : p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    static timespec fixed() { return timespec{1475713029, 669794202}; }  // 2016-10-06T00:17:09.669794202Z

    std::string dir_, path_;
};

const std::string kTs = "2016-10-06T00:17:09.669794202Z";

TEST_F(CriLogTest, TimestampIsRfc3339NanoUtc) {
    EXPECT_EQ(CriLog::timestamp(fixed()), kTs);
    EXPECT_EQ(CriLog::timestamp(timespec{0, 5}), "1970-01-01T00:00:00.000000005Z");
}

TEST_F(CriLogTest, CompleteLinesAreFullRecords) {
    CriLog log(path_, -1, 1024, fixed);
    log.write(1, "hello\nworld\n");
    log.write(2, "oops\n");
    EXPECT_EQ(content(), kTs + " stdout F hello\n" + kTs + " stdout F world\n" + kTs + " stderr F oops\n");
}

TEST_F(CriLogTest, PartialLineIsWrittenAsPAndFinishedByF) {
    CriLog log(path_, -1, 1024, fixed);
    log.write(1, "prompt> ");
    log.write(1, "answer\nnext");
    EXPECT_EQ(content(), kTs + " stdout P prompt> \n" + kTs + " stdout F answer\n" + kTs + " stdout P next\n");
}

TEST_F(CriLogTest, EmptyLinesAreKept) {
    CriLog log(path_, -1, 1024, fixed);
    log.write(1, "\n\n");
    EXPECT_EQ(content(), kTs + " stdout F \n" + kTs + " stdout F \n");
}

TEST_F(CriLogTest, LongLinesAreSplitIntoPParts) {
    CriLog log(path_, -1, 4, fixed);
    log.write(2, "abcdefghij\n");
    EXPECT_EQ(content(), kTs + " stderr P abcd\n" + kTs + " stderr P efgh\n" + kTs + " stderr F ij\n");
}

TEST_F(CriLogTest, LineOfExactlyTheMaximumIsOneRecord) {
    CriLog log(path_, -1, 4, fixed);
    log.write(1, "abcd\nefghijkl\n");
    EXPECT_EQ(content(), kTs + " stdout F abcd\n" + kTs + " stdout P efgh\n" + kTs + " stdout F ijkl\n");
}

TEST_F(CriLogTest, InvalidUtf8AndNulArePassedThrough) {
    CriLog log(path_, -1, 1024, fixed);
    const std::string bytes("\xff\xfe bad \xc3\x28 nul\0 end", 18);
    log.write(1, bytes + "\n");
    EXPECT_EQ(content(), kTs + " stdout F " + bytes + "\n");
}

TEST_F(CriLogTest, SizeCapStartsTheFileOver) {
    const std::string rec = kTs + " stdout F 0123456789\n";  // 52 bytes
    CriLog log(path_, static_cast<int64_t>(rec.size() * 2), 1024, fixed);
    log.write(1, "0123456789\n0123456789\n");
    EXPECT_EQ(content(), rec + rec);
    log.write(1, "0123456789\n");
    EXPECT_EQ(content(), rec) << "the third record does not fit: the file starts over";
    EXPECT_EQ(log.size(), static_cast<int64_t>(rec.size()));
}

TEST_F(CriLogTest, ReopenFollowsARotatedFile) {
    CriLog log(path_, -1, 1024, fixed);
    log.write(1, "before\n");
    fs::rename(path_, path_ + ".1");
    log.write(1, "still old\n");
    log.reopen();
    log.write(1, "after\n");
    EXPECT_EQ(content(path_ + ".1"), kTs + " stdout F before\n" + kTs + " stdout F still old\n");
    EXPECT_EQ(content(), kTs + " stdout F after\n");
}

TEST_F(CriLogTest, AppendsToAnExistingFile) {
    { std::ofstream(path_) << "existing\n"; }
    CriLog log(path_, -1, 1024, fixed);
    EXPECT_EQ(log.size(), 9);
    log.write(1, "x\n");
    EXPECT_EQ(content(), "existing\n" + kTs + " stdout F x\n");
}

TEST_F(CriLogTest, UnwritableDirectoryNamesThePath) {
    try {
        CriLog log(dir_ + "/missing/c.log", -1, 1024, fixed);
        FAIL() << "no error";
    } catch (const crisd::Error& e) {
        EXPECT_NE(std::string(e.what()).find(dir_ + "/missing/c.log"), std::string::npos) << e.what();
    }
}

}  // namespace
