/*
 * img_constructors.cpp - memory the program allocates before main: C++
 * global containers built by their constructors, a block allocated by a
 * constructor function, a global map. Threads (on other nodes under dsmrun)
 * fill them; main reads them back. Before main's allocations came from the
 * shared heap, a thread on node 1 wrote into its own node's private copy.
 */
#include "img_check.h"
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

std::vector<long> counts(4096, 1);
std::map<int, std::string> names = {{1, "one"}, {2, "two"}};
std::mutex names_lock;
static long *block;

__attribute__((constructor)) static void allocate_block() { block = static_cast<long *>(calloc(1000, sizeof(long))); }

int main() {
    const int threads = 4;
    std::vector<std::thread> team;
    for (int t = 0; t < threads; t++)
        team.emplace_back([t] {
            for (size_t i = t; i < counts.size(); i += threads) counts[i] += t;
            for (int i = t; i < 1000; i += threads) block[i] = t + 1;
            std::lock_guard<std::mutex> hold(names_lock);
            names[10 + t] = "thread " + std::to_string(t);
        });
    for (auto &t : team) t.join();
    long sum = 0;
    for (long v : counts) sum += v;
    long expected = 4096 + 1024L * (0 + 1 + 2 + 3);
    CHECK(sum == expected, "global vector: sum %ld, expected %ld (a thread's writes were lost)", sum, expected);
    long filled = 0;
    for (int i = 0; i < 1000; i++) filled += block[i];
    CHECK(filled == 2500, "constructor's block: %ld, expected 2500", filled);
    CHECK(names.size() == 6, "global map has %zu entries, expected 6", names.size());
    for (int t = 0; t < threads; t++)
        CHECK(names.count(10 + t) && names[10 + t] == "thread " + std::to_string(t), "map entry of thread %d", t);
    std::printf("img_constructors threads=%d failures=%d\n", threads, failures);
    return failures == 0 ? 0 : 1;
}
