module golora.dev/bench/extract

go 1.26
