// crisd-conmon's journald writer (conmon/journal.hpp): one entry per line with
// the design's fields, and journald's native protocol encoding.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "journal.hpp"

using namespace crisd::conmon;

namespace {

using Entry = std::map<std::string, std::string>;

struct Capture {
    std::vector<Entry> entries;
    Journal::Sender sender() {
        return [this](const iovec* f, size_t n) {
            Entry e;
            for (size_t i = 0; i < n; ++i) {
                const std::string field(static_cast<const char*>(f[i].iov_base), f[i].iov_len);
                const auto eq = field.find('=');
                e[field.substr(0, eq)] = field.substr(eq + 1);
            }
            entries.push_back(e);
        };
    }
};

const std::string kId = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const JournalIdentity kWho{kId, "web", "web-7d9f", "shop"};

TEST(ConmonJournal, OneEntryPerLineWithTheFields) {
    Capture c;
    Journal j(kWho, 1024, c.sender());
    j.write(1, "one\ntwo\n");
    j.write(2, "oops\n");
    ASSERT_EQ(c.entries.size(), 3u);
    EXPECT_EQ(c.entries[0]["MESSAGE"], "one");
    EXPECT_EQ(c.entries[1]["MESSAGE"], "two");
    EXPECT_EQ(c.entries[2]["MESSAGE"], "oops");
    EXPECT_EQ(c.entries[0]["PRIORITY"], "6");
    EXPECT_EQ(c.entries[2]["PRIORITY"], "3");
    const auto& e = c.entries[0];
    EXPECT_EQ(e.at("OBJECT_SYSTEMD_UNIT"), "crisd-" + kId + ".scope");
    EXPECT_EQ(e.at("CONTAINER_ID"), "0123456789ab");
    EXPECT_EQ(e.at("CONTAINER_ID_FULL"), kId);
    EXPECT_EQ(e.at("CONTAINER_NAME"), "web");
    EXPECT_EQ(e.at("POD_NAME"), "web-7d9f");
    EXPECT_EQ(e.at("POD_NAMESPACE"), "shop");
    EXPECT_EQ(e.at("SYSLOG_IDENTIFIER"), "web");
    EXPECT_EQ(e.count("CONTAINER_PARTIAL_MESSAGE"), 0u);
}

TEST(ConmonJournal, PartialLinesWaitForTheirNewlinePerStream) {
    Capture c;
    Journal j(kWho, 1024, c.sender());
    j.write(1, "hel");
    j.write(2, "err-");
    EXPECT_TRUE(c.entries.empty());
    j.write(1, "lo\nwor");
    ASSERT_EQ(c.entries.size(), 1u);
    EXPECT_EQ(c.entries[0]["MESSAGE"], "hello");
    j.flush();
    ASSERT_EQ(c.entries.size(), 3u);
    EXPECT_EQ(c.entries[1]["MESSAGE"], "wor");
    EXPECT_EQ(c.entries[2]["MESSAGE"], "err-");
    EXPECT_EQ(c.entries[2]["PRIORITY"], "3");
}

TEST(ConmonJournal, LongLinesAreSentInMarkedParts) {
    Capture c;
    Journal j(kWho, 4, c.sender());
    j.write(1, "abcdefghij\n");
    ASSERT_EQ(c.entries.size(), 3u);
    EXPECT_EQ(c.entries[0]["MESSAGE"], "abcd");
    EXPECT_EQ(c.entries[0]["CONTAINER_PARTIAL_MESSAGE"], "true");
    EXPECT_EQ(c.entries[1]["MESSAGE"], "efgh");
    EXPECT_EQ(c.entries[2]["MESSAGE"], "ij");
    EXPECT_EQ(c.entries[2].count("CONTAINER_PARTIAL_MESSAGE"), 0u);
}

TEST(ConmonJournal, NoNameFallsBackToTheShortId) {
    Capture c;
    Journal j(JournalIdentity{kId, "", "", ""}, 1024, c.sender());
    j.write(1, "x\n");
    ASSERT_EQ(c.entries.size(), 1u);
    EXPECT_EQ(c.entries[0]["SYSLOG_IDENTIFIER"], "0123456789ab");
}

TEST(ConmonJournal, NativeProtocolEncoding) {
    std::string plain = "MESSAGE=hello", prio = "PRIORITY=6";
    std::string binary("MESSAGE=a\nb\xff\0c", 14);
    iovec one[] = {{plain.data(), plain.size()}, {prio.data(), prio.size()}};
    EXPECT_EQ(encode_journal_entry(one, 2), "MESSAGE=hello\nPRIORITY=6\n");
    iovec two[] = {{binary.data(), binary.size()}};
    const std::string value("a\nb\xff\0c", 6);
    EXPECT_EQ(encode_journal_entry(two, 1), std::string("MESSAGE\n\x06\0\0\0\0\0\0\0", 16) + value + "\n");
}

}  // namespace
