module golora.dev/extractor

go 1.26
