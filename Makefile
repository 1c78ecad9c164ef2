# The two commands of the README. Both install what they need first.
.PHONY: run test setup watch

run:
	.ci/serve

test:
	.ci/test

setup:
	.ci/setup test
	.ci/setup run

watch:
	.ci/setup run
	cargo leptos watch
