#include <cstdio>
int main() { std::puts("afd"); return 0; }
