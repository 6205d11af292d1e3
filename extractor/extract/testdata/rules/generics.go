package rules

// Set is a set of comparable values.
type Set[T comparable] struct {
	m map[T]struct{}
}

// Add puts v into the set, allocating the map on first use.
func (s *Set[T]) Add(v T) {
	if s.m == nil {
		s.m = make(map[T]struct{})
	}
	s.m[v] = struct{}{}
}

// Pairs is a map with two type parameters.
type Pairs[K comparable, V any] map[K]V

// Put stores value under key and reports whether the key was new.
func (p Pairs[K, V]) Put(key K, value V) bool {
	_, ok := p[key]
	p[key] = value
	return !ok
}

// Keys returns the keys of m in no particular order.
func Keys[M ~map[K]V, K comparable, V any](m M) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
