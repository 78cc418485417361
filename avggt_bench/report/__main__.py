from avggt_bench.report import main

raise SystemExit(main())
